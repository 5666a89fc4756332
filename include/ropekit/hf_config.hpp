#pragma once
// Front: read the RoPE part of a HuggingFace `config.json` into a RopeSpec.
//
// Follows HF transformers' rules (modeling_rope_utils.py): rope_theta (or GPT-NeoX's
// rotary_emb_base), head_dim (or hidden_size / num_attention_heads), partial rotary as
// int(head_dim * partial_rotary_factor) (or rotary_pct, or an absolute rotary_dim), and the scaling
// block under `rope_scaling` or the newer `rope_parameters`, keyed by `rope_type` (or legacy `type`):
// default, linear, dynamic, yarn, longrope (alias "su"), llama3. Errors are ropekit::Error naming the
// JSON path, e.g. `rope_scaling.factor: expected a number > 0, got "abc"`.
//
// Per layer (HfConfigInfo::model): `layer_types` (or the pattern HF's config class derives for
// Gemma 2/3/4, Cohere2, GPT-OSS, Qwen3-Next / Qwen3.5, Llama 4, SmolLM3), `rope_parameters` keyed
// by layer type (a null entry: no RoPE), Gemma 3's legacy rope_local_base_freq, Gemma 4's
// global_head_dim for full-attention layers, `no_rope_layers` (Llama 4, SmolLM3: 1 = the layer uses
// RoPE), and the layer types HF's attention never rotates (Cohere2's full-attention layers, Qwen3-Next's
// linear-attention layers). Multimodal configs are read from their `text_config`.
//
// When both blocks are present, a non-empty `rope_scaling` wins, as in every transformers release
// (4.x knows no other; 5.x's RotaryEmbeddingConfigMixin.convert_rope_params_to_dict sets
// `rope_parameters = rope_scaling or rope_parameters`); if `rope_parameters` gives a different spec,
// HfConfigInfo::notes says so. Input is bounded: at most kMaxConfigBytes, nested at most
// kMaxJsonDepth levels (a ropekit::Error past either).
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ropekit/export.hpp"
#include "ropekit/model_rope.hpp"
#include "ropekit/spec.hpp"

namespace ropekit {

inline constexpr size_t kMaxConfigBytes = size_t{16} << 20;  // 16 MiB
inline constexpr int kMaxJsonDepth = 64;                       // the root object is level 1
inline constexpr int64_t kMaxLayers = 65536;                   // num_hidden_layers (one ModelRope entry each)

struct HfConfigInfo {
  RopeSpec spec;
  std::optional<int64_t> max_position_embeddings;  // the (scaled) context the config declares
  std::string model_type;                          // "" when absent
  std::optional<int64_t> num_attention_heads;      // q heads
  std::optional<int64_t> num_key_value_heads;      // k heads (defaults to num_attention_heads)
  std::vector<std::string> notes;                  // what was read past a conflict, one line each
  // Each layer's RoPE. `spec` above is that of the first layer with RoPE.
  ModelRope model = ModelRope({LayerRope{}});
};

ROPEKIT_API RopeSpec spec_from_hf_config_json(std::string_view json);
ROPEKIT_API RopeSpec spec_from_hf_config(const std::filesystem::path& path);

ROPEKIT_API HfConfigInfo hf_config_info_json(std::string_view json);
ROPEKIT_API HfConfigInfo hf_config_info(const std::filesystem::path& path);

}  // namespace ropekit
