#pragma once
// The engine calling convention (vLLM, SGLang, FlashInfer): q and k rotated in place by position,
// with a cos/sin cache the caller owns. Every ropekit spec can fill such a cache (cos_sin_cache).
#include <cstdint>
#include <optional>
#include <vector>

#include "ropekit/export.hpp"
#include "ropekit/spec.hpp"
#include "ropekit/table.hpp"
#include "ropekit/tensor_view.hpp"

namespace ropekit {

// [max_position, rot_dim], row-major and contiguous: row p holds rot_dim/2 cosines of p * theta_i,
// then the rot_dim/2 sines (any factor folded into them is applied as it is). f32, f16 or bf16;
// the rotation computes in fp32 either way. On a CUDA device, f32 only.
struct CosSinCacheView {
  const void* data = nullptr;
  DType dtype = DType::f32;
  Device device{};
  int64_t max_position = 0;
  int64_t rot_dim = 0;
};

struct EngineOptions {
  void* stream = nullptr;  // cudaStream_t for device views; ignored on the CPU
  int num_threads = 0;     // CPU threads, 0: every core
  // M-RoPE (vLLM's MRotaryEmbedding): positions hold 3 T ids, axis-major (t, h, w) as vLLM's
  // [3, T]; pair j of the rotated window turns by its section's axis (ropekit/spec.hpp MRope;
  // the sections sum to rot_dim / 2).
  std::optional<MRope> mrope;
};

// Rotates query and key (absent: query only) in place, token t at positions[t].
//   positions: one per token (options.mrope: three), host or device (as query); on a device, one outside
//              [0, max_position) leaves that token unwritten and is reported by the next call or
//              ropekit::cuda_check_errors(), on the host it is an Error before anything is written.
//   query:     [T, Hq * head_size], [T, Hq, head_size], [B, S, Hq * head_size] or
//              [B, S, Hq, head_size] (T or B * S tokens, b-major), last dimension contiguous;
//   key:       the same layout with its own head count (GQA), the same dtype and device.
//   is_neox:   pairs (i, i + rot_dim/2) (GPT-NeoX / HF rotate_half), else (2i, 2i + 1) (GPT-J).
//   rope_dim_offset: the rotated channels are [offset, offset + rot_dim) of each head; the others
//              are left as they are (DeepSeek-V4 and MiniCPM3 rotate trailing channels).
//   inverse:   rotate by -theta with the same cache values (undoes the forward when the cache's
//              rows are unit: cos^2 + sin^2 = 1, no attention factor folded in).
// All arguments are checked before anything is written; an Error leaves query and key untouched.
ROPEKIT_API void rotary_embedding(const IndexView& positions, const TensorView& query, const std::optional<TensorView>& key,
                      int64_t head_size, const CosSinCacheView& cos_sin_cache, bool is_neox,
                      int64_t rope_dim_offset = 0, bool inverse = false, const EngineOptions& options = {});

// The cache for `spec` over positions [0, max_position): [max_position, spec.rotary_dim()] fp32,
// cos half then sin half, the attention factor (YaRN, LongRoPE) folded in as ropekit's tables do.
// Dynamic NTK and LongRoPE use the frequencies for `seq_len` (see TableOptions::seq_len).
ROPEKIT_API std::vector<float> cos_sin_cache(const RopeSpec& spec, int64_t max_position, const TableOptions& options = {});

}  // namespace ropekit
