#pragma once
// What rotary_embedding and the fused serving ops (kv_cache.cpp) share: the engine layout checked
// and mapped onto one RopeParams.
#include <optional>
#include <string>
#include <vector>

#include "apply_call.hpp"
#include "ropekit/engine.hpp"

namespace ropekit::detail {

// query/key as (tokens, heads, head_size) or (batch, seq, heads, head_size) views: [T, H*D],
// [T, H, D], [B, S, H*D] or [B, S, H, D], last dimension contiguous; `tokens` of them.
TensorView heads_view(const TensorView& v, const std::string& name, int64_t head_size, int64_t tokens);

// A checked call, ready for dispatch(params). params may point into `widened` and `token_index`
// (an f16/bf16 cache's rows, read by token), so the call stays where it was prepared.
struct EngineCall {
  RopeParams params;
  int64_t tokens = 0;
  int64_t axes = 1;            // position ids a token (M-RoPE: 3, axis-major)
  bool nothing_to_do = false;  // no tokens, or q and k empty
  std::vector<float> widened;
  std::vector<int64_t> token_index;

  EngineCall() = default;
  EngineCall(const EngineCall&) = delete;
  EngineCall& operator=(const EngineCall&) = delete;
};

// rotary_embedding's checks (every argument, every host position) and its params: q and k are the
// rotated windows [offset, offset + rot_dim) of each head, in place.
void prepare_engine_call(EngineCall& call, const IndexView& positions, const TensorView& query,
                         const std::optional<TensorView>& key, int64_t head_size, const CosSinCacheView& cos_sin_cache,
                         bool is_neox, int64_t rope_dim_offset, bool inverse, const EngineOptions& options);

}  // namespace ropekit::detail
