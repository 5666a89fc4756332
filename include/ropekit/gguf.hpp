#pragma once
// Front: read the RoPE metadata of a llama.cpp GGUF file (version 2 or 3, little-endian) into a
// RopeSpec, as llama.cpp would run it.
//
// Only the header, the key/value section and the tensor-info section are read, plus the data of the
// three small RoPE tensors when the file has them (rope_freqs.weight, rope_factors_long.weight,
// rope_factors_short.weight: F32 or F16, rotary_dim/2 values each, at their offset in the data
// section, which starts at the next multiple of general.alignment). Keys, for arch =
// general.architecture:
//   {arch}.rope.freq_base (default 10000), .rope.dimension_count (default the head dimension),
//   .rope.scaling.type (none | linear | yarn | longrope; default linear, as llama.cpp),
//   .rope.scaling.factor (or the older .rope.scale_linear), .rope.scaling.original_context_length
//   (default {arch}.context_length), .rope.scaling.attn_factor, .rope.scaling.yarn_ext_factor,
//   .yarn_attn_factor, .yarn_beta_fast, .yarn_beta_slow, .yarn_log_multiplier,
//   .rope.dimension_sections (M-RoPE), .rope.freq_base_swa, .rope.dimension_count_swa,
//   .attention.key_length (default embedding_length / head_count), .attention.key_length_swa,
//   .attention.head_count, .attention.head_count_kv, .attention.sliding_window, .context_length.
//
// How llama.cpp's parameters map onto ropekit's families (GgufRopeInfo::notes says which applied):
//   - pair style: llama.cpp's table of architectures (llama_model_rope_type). NORM architectures
//     (llama, mistral3, deepseek2, granite, ...) rotate interleaved pairs (2i, 2i+1): llama.cpp's
//     converter permutes the q/k weights of Llama-family models, so on the original HF weights this
//     is HF's half style. NEOX ones (qwen2, phi3, gemma*, falcon, stablelm, gptneox, ...) rotate
//     half style; M-RoPE ones (qwen2vl, qwen3vl, ...) too, for text positions (every section
//     rotates with the same position). An architecture without RoPE (gpt2, mamba, ...) or one not
//     in the table is an error.
//   - linear: scaling::Linear{factor}; yarn: scaling::Yarn{factor, original_context_length,
//     beta_fast (32), beta_slow (1), extrapolation_factor = yarn_ext_factor (1)}, attention factor
//     as llama.cpp computes it (0.1 ln(factor) + 1, or the yarn_log_multiplier ratio, times
//     rope.scaling.attn_factor).
//   - per-pair divisors: llama.cpp divides frequency i by rope_freqs[i] (Llama 3.x: the llama3
//     scaling baked in by the converter) or by rope_factors_long|short[i] (LongRoPE, long once the
//     context passes original_context_length). ropekit's family for per-pair divisors is
//     scaling::LongRope: rope_freqs becomes LongRope with short_factor = long_factor = rope_freqs
//     (so the sequence length never matters), a linear factor is folded into the divisors, and the
//     attention factor is set explicitly (rope.scaling.attn_factor, default 1). This is exact: the
//     same inverse frequencies and attention factor llama.cpp rotates with. A linear or no scaling
//     with an attention factor other than 1 is written the same way (uniform divisors).
//   - MLA models ({arch}.attention.kv_lora_rank present, e.g. deepseek2): the rope slice is its own
//     tensor, so head_dim = rotary_dim = rope.dimension_count.
//
// Hostile files: every count, length and offset is checked against the bytes left in the file and
// against the limits below before anything is read or allocated; a bad file is a ropekit::Error
// naming the key or section and what was expected, never a crash, a hang or a large allocation.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ropekit/export.hpp"
#include "ropekit/spec.hpp"

namespace ropekit {

inline constexpr uint64_t kMaxGgufStringBytes = uint64_t{1} << 16;   // a key, or a string value that is read
inline constexpr uint64_t kMaxGgufKvCount = uint64_t{1} << 20;       // key/value pairs
inline constexpr uint64_t kMaxGgufTensorCount = uint64_t{1} << 24;   // tensor infos
inline constexpr uint64_t kMaxGgufStoredArray = uint64_t{1} << 16;   // elements of an array that is read
inline constexpr uint64_t kMaxGgufAlignment = uint64_t{1} << 20;     // general.alignment

struct GgufRopeInfo {
  RopeSpec spec;                                 // the full-attention layers' RoPE
  std::optional<RopeSpec> swa_spec;              // the sliding-window layers', when the file has them
  std::string architecture;                      // general.architecture
  uint32_t version = 0;                          // GGUF version (2 or 3)
  std::optional<int64_t> context_length;         // {arch}.context_length
  std::optional<int64_t> head_count;             // q heads (layer 0 when the file gives one per layer)
  std::optional<int64_t> head_count_kv;          // k heads (defaults to head_count)
  std::optional<int64_t> sliding_window;         // {arch}.attention.sliding_window
  std::vector<int64_t> dimension_sections;       // {arch}.rope.dimension_sections (M-RoPE); empty if absent
  std::vector<std::string> notes;                // how the metadata was mapped, one line each
};

// A whole GGUF file already in memory (a prefix through the RoPE tensors' data is enough).
ROPEKIT_API GgufRopeInfo gguf_rope_info_bytes(std::string_view bytes);

// A GGUF file on disk: a regular file, read only as far as the metadata and the RoPE tensors.
// Errors start with the path.
ROPEKIT_API GgufRopeInfo gguf_rope_info(const std::filesystem::path& path);
ROPEKIT_API RopeSpec spec_from_gguf(const std::filesystem::path& path);

// True when the file starts with the GGUF magic (false for a missing or unreadable file).
ROPEKIT_API bool has_gguf_magic(const std::filesystem::path& path);

}  // namespace ropekit
