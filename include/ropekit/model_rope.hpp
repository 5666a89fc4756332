#pragma once
// Layer 3: which RoPE each layer of a model uses. Models since 2024 mix them: Gemma 3 rotates its
// sliding-window layers with theta 1e4 and its full-attention layers with theta 1e6 (and a linear
// factor), Gemma 4's full layers use proportional RoPE on a wider head, Llama 4 and SmolLM3 leave
// every 4th layer without RoPE (NoPE), Cohere2 its full-attention layers, Qwen3-Next its linear-
// attention layers. A ModelRope maps each layer index to its spec, or to none.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ropekit/export.hpp"
#include "ropekit/spec.hpp"

namespace ropekit {

struct LayerRope {
  std::string layer_type;       // the config's label ("sliding_attention", "full_attention", ...), "" if none
  std::optional<RopeSpec> spec;  // nullopt: the layer applies no RoPE (NoPE)
  // The query's position-dependent scale, applied after RoPE: Llama 4's attn_temperature_tuning (on
  // its NoPE layers), Ministral 3 / Mistral 4's llama_4_scaling_beta (every layer). It scales the
  // whole query head: fuse it with ApplyOptions::query_scale, and use apply_query_scale on a NoPE
  // layer or on the channels a call does not see (MLA's q_nope). nullopt: none.
  std::optional<QueryScale> query_scale;
  // What the config does to the attention's softmax scale (1 / sqrt(qk head dim) in most models):
  // DeepSeek-V2/V3-style YaRN multiplies it by mscale(factor, mscale_all_dim)^2. 1: nothing. Pass it
  // to the attention kernel, or fold it into q as QueryScale{factor}.
  double softmax_scale_factor = 1.0;
};

// Layers that share one RoPE (spec, query scale and softmax scale factor), in order of first use.
struct LayerGroup {
  std::optional<RopeSpec> spec;
  std::optional<QueryScale> query_scale;
  double softmax_scale_factor = 1.0;
  std::vector<std::string> layer_types;  // the distinct labels of these layers
  std::vector<int64_t> layers;
};

class ROPEKIT_API ModelRope {
 public:
  // Throws ropekit::Error when `layers` is empty.
  explicit ModelRope(std::vector<LayerRope> layers);

  int64_t num_layers() const { return static_cast<int64_t>(layers_.size()); }
  const std::vector<LayerRope>& layers() const { return layers_; }
  // Throws ropekit::Error naming `layer` when index is not in [0, num_layers).
  const LayerRope& layer(int64_t index) const;
  // The first layer that applies RoPE, or nullopt when none does.
  std::optional<int64_t> first_rope_layer() const;
  // Layers grouped by equal spec, query scale and softmax scale factor (NoPE layers alike form one
  // group), in order of first use.
  std::vector<LayerGroup> groups() const;

 private:
  std::vector<LayerRope> layers_;
};

}  // namespace ropekit
