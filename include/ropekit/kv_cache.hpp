#pragma once
// Fused serving ops on the engine calling convention (ropekit/engine.hpp): rotate q in place and
// write the rotated k (and v) into a paged KV cache in the same pass over the tokens.
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "ropekit/engine.hpp"
#include "ropekit/export.hpp"
#include "ropekit/tensor_view.hpp"

namespace ropekit {

// Where a page keeps its tokens: NHD [pages, page_size, heads, head_dim] (vLLM's flash layout,
// FlashInfer's default) or HND [pages, heads, page_size, head_dim].
enum class KvLayout : uint8_t { nhd, hnd };

// One layer's paged cache. Views of rank 4 in `layout`, any strides but a contiguous last
// dimension: a combined [pages, 2, ...] tensor is passed as its two slices. Slot s is token
// s % page_size of page s / page_size.
//   k_cache: heads and head_dim of key; f32, f16, bf16 or FP8 (f8_e4m3, f8_e5m2).
//   v_cache: heads and head_dim of value (MLA: the latent ckv, one head of 512; k is k_pe);
//            absent (data null, rank 0) when no value is given.
//   k_scale, v_scale: FP8 caches store value / scale rounded to nearest even and clamped to the
//            format's largest finite value (vLLM's convention; dequantised: stored * scale).
//            Empty: 1; one value for every head, or one per head. Only FP8 caches take scales.
struct PagedKvCache {
  TensorView k_cache;
  TensorView v_cache;
  KvLayout layout = KvLayout::nhd;
  std::span<const float> k_scale;
  std::span<const float> v_scale;
};

// Rotates query in place (as rotary_embedding) and writes key rotated and value as they are into
// the cache at slot_mapping[t] for token t; a negative slot skips the token's write (vLLM's padding),
// its query is still rotated. key and value are left as they are.
//   positions:    [T] (options.mrope: [3, T]) as rotary_embedding; query [T, Hq * head_size] or
//                 [T, Hq, head_size]; key [T, Hk * head_size] or [T, Hk, head_size], Hk the cache's
//                 heads; value [T, Hv * Dv] or [T, Hv, Dv] with the v cache's heads and head_dim
//                 (query, key, value may be slices of one packed qkv buffer);
//   slot_mapping: T ids, each negative or below pages * page_size, no slot twice.
// Everything is checked before anything is written: an Error leaves query and the cache untouched.
// On the CPU only for now (device views are an Error).
ROPEKIT_API void rotary_embedding_with_kv_cache(const IndexView& positions, const TensorView& query, const TensorView& key,
                                                const std::optional<TensorView>& value, int64_t head_size,
                                                const CosSinCacheView& cos_sin_cache, bool is_neox,
                                                const IndexView& slot_mapping, const PagedKvCache& cache,
                                                int64_t rope_dim_offset = 0, const EngineOptions& options = {});

// Re-rotates cached keys in place (llama.cpp's context shift; a cached prefix reused at other
// positions): the k heads at slots[i], rotated for from_positions[i], become rotated for
// to_positions[i], as R(to) R(from)^-1 with the cache's rows (exact when they are unit rows: no
// attention factor folded in). Computed in fp32 and rounded once into the cache (FP8: dequantised
// with k_scale, requantised). A negative slot is skipped; slots must be distinct; positions as
// rotary_embedding's. Everything is checked first; an Error leaves the cache untouched. CPU.
ROPEKIT_API void rerotate_kv_cache(const IndexView& slots, const IndexView& from_positions,
                                   const IndexView& to_positions, const CosSinCacheView& cos_sin_cache, bool is_neox,
                                   const TensorView& k_cache, KvLayout layout, std::span<const float> k_scale = {},
                                   int64_t rope_dim_offset = 0, const EngineOptions& options = {});

// FlashInfer's page-table addressing as a slot mapping: token t of request batch_indices[t] at
// kv_positions[t] (its place in that request's KV sequence) goes to page
// kv_indices[kv_indptr[b] + kv_positions[t] / page_size], token kv_positions[t] % page_size of it.
// Request b owns pages kv_indices[kv_indptr[b] .. kv_indptr[b + 1]), the last of them filled to
// kv_last_page_len[b] (in [1, page_size] when it has pages); a position past its filled length,
// a page id outside [0, num_pages) or a decreasing kv_indptr is an Error naming it.
ROPEKIT_API std::vector<int64_t> paged_kv_slots(const IndexView& batch_indices, const IndexView& kv_positions,
                                                const IndexView& kv_indices, const IndexView& kv_indptr,
                                                const IndexView& kv_last_page_len, int64_t page_size,
                                                int64_t num_pages);

}  // namespace ropekit
