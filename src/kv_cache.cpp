// RoPE + paged KV-cache append on the CPU. Threads take chunks of tokens; each chunk's k is rotated
// into a small per-thread buffer (copied there first when only a window of the head turns) together
// with q in place (the rotation kernels, unchanged), then written to its slots with v, so q, k and
// v are read once from memory and q and the cache written once (the buffer stays in the core's
// cache). Re-rotation of cached keys gathers their rows, turns them and scatters them back.
#include "ropekit/kv_cache.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "check.hpp"
#include "engine_call.hpp"
#include "half_float.hpp"
#include "overlap.hpp"

namespace ropekit {
namespace {

using detail::cat;
using detail::fail;

using StoredE4m3 = detail::StorageFormat<uint8_t, float, detail::Fp8E4m3::to_float, detail::Fp8E4m3::from_float>;
using StoredE5m2 = detail::StorageFormat<uint8_t, float, detail::Fp8E5m2::to_float, detail::Fp8E5m2::from_float>;

bool is_fp8(DType t) { return t == DType::f8_e4m3 || t == DType::f8_e5m2; }

// f.template operator()<Format>() for a cache or source element type (f64 is neither).
template <class F>
void with_cache_format(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32: return f.template operator()<detail::StoredF32>();
    case DType::f16: return f.template operator()<detail::StoredF16>();
    case DType::bf16: return f.template operator()<detail::StoredBf16>();
    case DType::f8_e4m3: return f.template operator()<StoredE4m3>();
    case DType::f8_e5m2: return f.template operator()<StoredE5m2>();
    case DType::f64: break;  // refused by the checks
  }
}

// n elements of `from` stored as `to`, divided by `scale` first (FP8 only; 1 otherwise).
template <class From, class To>
void store_row(const void* src, void* dst, int64_t n, float scale) {
  const auto* s = static_cast<const typename From::Storage*>(src);
  auto* d = static_cast<typename To::Storage*>(dst);
  if (scale == 1.0f) {
    for (int64_t i = 0; i < n; ++i) d[i] = To::store(From::load(s[i]));
  } else {
    for (int64_t i = 0; i < n; ++i) d[i] = To::store(From::load(s[i]) / scale);
  }
}

using RowStore = void (*)(const void*, void*, int64_t, float);

RowStore row_store(DType from, DType to) {
  RowStore out = nullptr;
  with_cache_format(from, [&]<class From>() {
    with_cache_format(to, [&]<class To>() { out = &store_row<From, To>; });
  });
  return out;
}

// One cache tensor checked: slot s at page s / page_size, token s % page_size; strides in elements.
struct CacheSide {
  char* data = nullptr;
  DType dtype = DType::f32;
  int64_t heads = 0, head_dim = 0;
  int64_t page_stride = 0, token_stride = 0, head_stride = 0;
  int64_t pages = 0, page_size = 0;
  std::vector<float> scales;  // one per head
  RowStore store = nullptr;   // from the source's dtype into the cache's
  bool copy = false;          // same dtype, no scale: memcpy
};

CacheSide check_cache_side(const TensorView& v, const std::string& name, KvLayout layout, int64_t heads,
                           int64_t head_dim, DType source, std::span<const float> scale, const std::string& scale_name) {
  if (v.rank != 4)
    fail(name + ".rank", layout == KvLayout::nhd ? "4 [pages, page_size, heads, head_dim] (NHD)"
                                                 : "4 [pages, heads, page_size, head_dim] (HND)", v.rank);
  if (v.dtype != DType::f32 && v.dtype != DType::f16 && v.dtype != DType::bf16 && !is_fp8(v.dtype))
    fail(name + ".dtype", "f32, f16, bf16, f8_e4m3 or f8_e5m2", to_string(v.dtype));
  if (v.device.type != DeviceType::cpu)
    fail(name + ".device", "cpu (the fused KV-cache write runs on the CPU for now)", to_string(v.device));
  for (int d = 0; d < 4; ++d)
    if (v.shape[static_cast<size_t>(d)] < 0) fail(cat(name, ".shape[", d, "]"), ">= 0", v.shape[static_cast<size_t>(d)]);
  const int head_axis = layout == KvLayout::nhd ? 2 : 1;
  const int token_axis = layout == KvLayout::nhd ? 1 : 2;
  CacheSide c;
  c.data = static_cast<char*>(v.data);
  c.dtype = v.dtype;
  c.pages = v.shape[0];
  c.page_size = v.shape[static_cast<size_t>(token_axis)];
  c.heads = v.shape[static_cast<size_t>(head_axis)];
  c.head_dim = v.shape[3];
  if (c.heads != heads) fail(cat(name, ".shape[", head_axis, "]"), cat(heads, " heads (as its source)"), v.shape_string());
  if (c.head_dim != head_dim) fail(name + ".shape[3]", cat("head_dim ", head_dim, " (as its source)"), v.shape_string());
  if (v.shape[3] > 1 && v.strides[3] != 1) fail(name + ".strides[3]", "1 (head_dim contiguous)", v.strides[3]);
  c.page_stride = v.strides[0];
  c.token_stride = v.strides[static_cast<size_t>(token_axis)];
  c.head_stride = v.strides[static_cast<size_t>(head_axis)];
  if (v.numel() > 0) {
    if (c.data == nullptr) fail(name + ".data", "a non-null pointer", "nullptr");
    if (!detail::aligned_to(c.data, dtype_size(v.dtype))) detail::fail_misaligned(c.data, dtype_size(v.dtype), name + ".data", to_string(v.dtype));
    detail::check_extent(v, name);
    if (detail::self_overlapping(v)) fail(name + ".strides", "no two slots or heads on the same memory", v.shape_string());
  }
  if (!scale.empty() && !is_fp8(v.dtype))
    fail(scale_name, cat("empty for a ", to_string(v.dtype), " cache (scales quantise FP8 caches)"), scale.size());
  if (scale.size() > 1 && static_cast<int64_t>(scale.size()) != heads)
    fail(scale_name + ".size", cat("0, 1 or the cache's heads (", heads, ")"), scale.size());
  c.scales.assign(static_cast<size_t>(heads), 1.0f);
  for (size_t i = 0; i < scale.size(); ++i) {
    if (!(std::isfinite(scale[i]) && scale[i] > 0.0f)) fail(cat(scale_name, "[", i, "]"), "finite and > 0", scale[i]);
    for (int64_t h = 0; h < heads; ++h)
      if (scale.size() == 1 || static_cast<int64_t>(i) == h) c.scales[static_cast<size_t>(h)] = scale[i];
  }
  c.store = row_store(source, v.dtype);
  c.copy = source == v.dtype;  // (FP8 caches never match a source dtype)
  return c;
}

IndexView slice(const IndexView& v, int64_t begin, int64_t n) {
  IndexView out = v;
  out.data = static_cast<const char*>(v.data) + begin * (v.type == IndexType::i64 ? 8 : 4);
  out.size = n;
  return out;
}

void check_slots(const IndexView& slots, int64_t tokens, int64_t capacity, const Device& query_device,
                 const std::string& name = "slot_mapping") {
  if (slots.type != IndexType::i32 && slots.type != IndexType::i64)
    fail(name + ".type", "i32 or i64", static_cast<int>(slots.type));
  if (!(slots.device == query_device))
    fail(name + ".device", cat(to_string(query_device), " (as query)"), to_string(slots.device));
  if (slots.size != tokens) fail(name + ".size", cat(tokens, " (one slot per token)"), slots.size);
  if (tokens > 0 && slots.data == nullptr) fail(name + ".data", "a non-null pointer", "nullptr");
  std::vector<std::pair<int64_t, int64_t>> written;  // (slot, token)
  written.reserve(static_cast<size_t>(tokens));
  for (int64_t t = 0; t < tokens; ++t) {
    const int64_t s = slots[t];
    if (s >= capacity)
      fail(cat(name, "[", t, "]"), cat("negative (skip) or below pages * page_size (", capacity, ")"), s);
    if (s >= 0) written.emplace_back(s, t);
  }
  std::sort(written.begin(), written.end());
  for (size_t i = 1; i < written.size(); ++i)
    if (written[i].first == written[i - 1].first)
      fail(cat(name, "[", written[i].second, "]"), cat("a slot no other token writes (token ", written[i - 1].second,
                                                              " writes it too)"), written[i].first);
}

// The parts of views that the fused op writes must not share memory with anything it reads.
void check_apart(const std::vector<std::pair<const TensorView*, std::string>>& written,
                 const std::vector<std::pair<const TensorView*, std::string>>& all) {
  const auto present = [](const TensorView* v) { return v->rank > 0 && v->numel() > 0; };  // (an absent v cache: rank 0)
  for (const auto& [v, name] : all)
    if (present(v)) detail::check_extent(*v, name);
  for (size_t i = 0; i < written.size(); ++i) {
    for (const auto& [other, other_name] : all) {
      if (other == written[i].first || !present(other) || !present(written[i].first)) continue;
      if (detail::may_overlap(*written[i].first, *other))
        fail(written[i].second, cat("memory apart from ", other_name, " (the op reads one while writing the other)"),
             "overlapping views");
    }
  }
}

}  // namespace

void rotary_embedding_with_kv_cache(const IndexView& positions, const TensorView& query, const TensorView& key,
                                    const std::optional<TensorView>& value, int64_t head_size,
                                    const CosSinCacheView& cos_sin_cache, bool is_neox, const IndexView& slot_mapping,
                                    const PagedKvCache& cache, int64_t rope_dim_offset, const EngineOptions& options) {
  if (query.device.type != DeviceType::cpu)
    fail("query.device", "cpu (the fused KV-cache write runs on the CPU for now)", to_string(query.device));
  if (query.rank > 3) fail("query.rank", "2 [T, Hq*head_size] or 3 [T, Hq, head_size] (tokens flattened)", query.rank);
  if (key.rank > 3) fail("key.rank", "2 [T, Hk*head_size] or 3 [T, Hk, head_size] (tokens flattened)", key.rank);
  thread_local detail::EngineCall call;
  detail::prepare_engine_call(call, positions, query, key, head_size, cos_sin_cache, is_neox, rope_dim_offset,
                              /*inverse=*/false, options);
  const int64_t tokens = call.tokens;
  const TensorView k_heads = detail::heads_view(key, "key", head_size, tokens);
  const int64_t hk = k_heads.shape[1];
  CacheSide kc = check_cache_side(cache.k_cache, "cache.k_cache", cache.layout, hk, head_size, key.dtype, cache.k_scale,
                                  "cache.k_scale");
  CacheSide vc;
  TensorView v_heads;
  if (value) {
    if (value->rank != 2 && value->rank != 3)
      fail("value.rank", "2 [T, Hv*Dv] or 3 [T, Hv, Dv] (the v cache's heads and head_dim)", value->rank);
    if (value->dtype != DType::f32 && value->dtype != DType::f16 && value->dtype != DType::bf16)
      fail("value.dtype", "f32, f16 or bf16", to_string(value->dtype));
    if (!(value->device == query.device)) fail("value.device", cat(to_string(query.device), " (as query)"), to_string(value->device));
    const TensorView& vcache = cache.v_cache;
    if (vcache.rank != 4) fail("cache.v_cache.rank", "4 (the cache of value)", vcache.rank);
    const int64_t dv = vcache.shape[3];
    if (dv <= 0) fail("cache.v_cache.shape[3]", "> 0 (value's head_dim)", vcache.shape_string());
    v_heads = detail::heads_view(*value, "value", dv, tokens);
    if (v_heads.numel() > 0 && value->data == nullptr) fail("value.data", "a non-null pointer", "nullptr");
    if (v_heads.numel() > 0 && !detail::aligned_to(value->data, dtype_size(value->dtype)))
      detail::fail_misaligned(value->data, dtype_size(value->dtype), "value.data", to_string(value->dtype));
    vc = check_cache_side(vcache, "cache.v_cache", cache.layout, v_heads.shape[1], dv, value->dtype, cache.v_scale,
                          "cache.v_scale");
    if (vc.pages != kc.pages || vc.page_size != kc.page_size)
      fail("cache.v_cache.shape", cat(kc.pages, " pages of ", kc.page_size, " slots (as cache.k_cache)"),
           vcache.shape_string());
  } else if (cache.v_cache.data != nullptr || cache.v_cache.rank != 0) {
    fail("cache.v_cache", "absent (data null, rank 0) without a value", cache.v_cache.shape_string());
  } else if (!cache.v_scale.empty()) {
    fail("cache.v_scale", "empty without a value", cache.v_scale.size());
  }
  int64_t capacity = 0;
  if (__builtin_mul_overflow(kc.pages, kc.page_size, &capacity))
    fail("cache.k_cache.shape", "pages * page_size that fits in int64", cache.k_cache.shape_string());
  check_slots(slot_mapping, tokens, capacity, query.device);
  {
    const std::vector<std::pair<const TensorView*, std::string>> written{{&cache.k_cache, "cache.k_cache"},
                                                                        {&cache.v_cache, "cache.v_cache"}};  // (v: rank 0 when absent)
    std::vector<std::pair<const TensorView*, std::string>> all{{&query, "query"}, {&key, "key"},
                                                               {&cache.k_cache, "cache.k_cache"}};
    if (value) all.emplace_back(&*value, "value"), all.emplace_back(&cache.v_cache, "cache.v_cache");
    check_apart(written, all);
    if (value) check_apart({{&query, "query"}}, {{&*value, "value"}});  // (query and key: checked as rotary_embedding's)
  }
  if (tokens == 0) return;

  // Chunks of k small enough to stay in the core's cache between the rotation and the write.
  const int64_t key_bytes = hk * head_size * dtype_size(key.dtype);
  const int64_t chunk = std::clamp<int64_t>(int64_t{131072} / std::max<int64_t>(key_bytes, 1), 1, 256);
  const int64_t q_bytes = call.params.q.heads * head_size * dtype_size(query.dtype);
  const int64_t v_bytes = value ? v_heads.shape[1] * v_heads.shape[2] * dtype_size(value->dtype) : 0;
  const int64_t bytes = tokens * (2 * q_bytes + 2 * key_bytes + 2 * v_bytes);
  const detail::RopeParams& whole = call.params;
  const int64_t rot_offset = rope_dim_offset;
  const int64_t k_elt = dtype_size(key.dtype);
  const int64_t axes = call.axes;
  const bool whole_rows_rotated = cos_sin_cache.rot_dim == head_size;
  // NHD caches with dense heads take a token's heads in one copy.
  const bool k_rows = kc.copy && kc.head_stride == head_size;
  const bool v_rows = value && vc.copy && vc.head_stride == vc.head_dim && v_heads.strides[1] == vc.head_dim;
  detail::cpu_parallel_chunks(tokens, bytes, options.num_threads, [&](int64_t u0, int64_t u1) {
    thread_local std::vector<unsigned char> scratch;
    thread_local std::vector<int64_t> ids;
    scratch.resize(static_cast<size_t>(chunk * key_bytes));
    for (int64_t t0 = u0; t0 < u1; t0 += chunk) {
      const int64_t n = std::min(chunk, u1 - t0);
      for (int64_t t = 0; t < n && !whole_rows_rotated; ++t) {  // key rows -> scratch [n, Hk, head_size]
        for (int64_t h = 0; h < hk; ++h) {
          std::memcpy(scratch.data() + (t * hk + h) * head_size * k_elt,
                      static_cast<const char*>(k_heads.data) + ((t0 + t) * k_heads.strides[0] + h * k_heads.strides[1]) * k_elt,
                      static_cast<size_t>(head_size * k_elt));
        }
      }
      detail::RopeParams p = whole;
      p.seq = n;
      p.num_threads = 1;
      const int64_t q_elt = dtype_size(p.dtype);
      if (p.q.heads > 0) {
        p.q.in = static_cast<const char*>(whole.q.in) + t0 * whole.q.in_stride[1] * q_elt;
        p.q.out = static_cast<char*>(whole.q.out) + t0 * whole.q.out_stride[1] * q_elt;
      }
      if (p.has_k && p.k.heads > 0) {  // rotated into scratch: from key itself when that is the whole row
        char* window = reinterpret_cast<char*>(scratch.data()) + rot_offset * k_elt;
        p.k.in = whole_rows_rotated ? static_cast<const char*>(whole.k.in) + t0 * whole.k.in_stride[1] * k_elt : window;
        if (!whole_rows_rotated) p.k.in_stride[1] = hk * head_size, p.k.in_stride[2] = head_size;
        p.k.out = window;
        p.k.out_stride[0] = 0;
        p.k.out_stride[1] = hk * head_size;
        p.k.out_stride[2] = head_size;
        p.k.in_place = !whole_rows_rotated;
      }
      const IndexView& all_ids = whole.positions.values;
      if (axes == 1) {
        p.positions = Positions::token_ids(slice(all_ids, t0, n));
      } else {  // axis-major [axes, T] -> [axes, n]
        ids.resize(static_cast<size_t>(axes * n));
        for (int64_t a = 0; a < axes; ++a)
          for (int64_t t = 0; t < n; ++t) ids[static_cast<size_t>(a * n + t)] = all_ids[a * tokens + t0 + t];
        p.positions = Positions::token_ids(IndexView(ids.data(), axes * n), axes);
      }
      detail::dispatch(p);
      for (int64_t t = 0; t < n; ++t) {
        const int64_t slot = slot_mapping[t0 + t];
        if (slot < 0) continue;
        const int64_t page = slot / kc.page_size, in_page = slot % kc.page_size;
        for (int64_t h = 0; h < (k_rows ? 1 : hk); ++h) {
          const unsigned char* src = scratch.data() + (t * hk + h) * head_size * k_elt;
          char* dst = kc.data + (page * kc.page_stride + in_page * kc.token_stride + h * kc.head_stride) * dtype_size(kc.dtype);
          if (k_rows) std::memcpy(dst, src, static_cast<size_t>(hk * head_size * k_elt));
          else if (kc.copy) std::memcpy(dst, src, static_cast<size_t>(head_size * k_elt));
          else kc.store(src, dst, head_size, kc.scales[static_cast<size_t>(h)]);
        }
        if (!value) continue;
        const int64_t v_elt = dtype_size(value->dtype);
        for (int64_t h = 0; h < (v_rows ? 1 : vc.heads); ++h) {
          const char* src = static_cast<const char*>(v_heads.data) + ((t0 + t) * v_heads.strides[0] + h * v_heads.strides[1]) * v_elt;
          char* dst = vc.data + (page * vc.page_stride + in_page * vc.token_stride + h * vc.head_stride) * dtype_size(vc.dtype);
          if (v_rows) std::memcpy(dst, src, static_cast<size_t>(vc.heads * vc.head_dim * v_elt));
          else if (vc.copy) std::memcpy(dst, src, static_cast<size_t>(vc.head_dim * v_elt));
          else vc.store(src, dst, vc.head_dim, vc.scales[static_cast<size_t>(h)]);
        }
      }
    }
  });
}

void rerotate_kv_cache(const IndexView& slots, const IndexView& from_positions, const IndexView& to_positions,
                       const CosSinCacheView& cos_sin_cache, bool is_neox, const TensorView& k_cache, KvLayout layout,
                       std::span<const float> k_scale, int64_t rope_dim_offset, const EngineOptions& options) {
  if (options.mrope) fail("options.mrope", "absent (re-rotation takes one position a token)", "M-RoPE sections");
  if (k_cache.rank != 4) fail("k_cache.rank", "4 (NHD or HND pages)", k_cache.rank);
  const int64_t heads = k_cache.shape[layout == KvLayout::nhd ? 2 : 1], head_dim = k_cache.shape[3];
  const CacheSide kc = check_cache_side(k_cache, "k_cache", layout, heads, head_dim, DType::f32, k_scale, "k_scale");
  int64_t capacity = 0;
  if (__builtin_mul_overflow(kc.pages, kc.page_size, &capacity))
    fail("k_cache.shape", "pages * page_size that fits in int64", k_cache.shape_string());
  const int64_t n = slots.size;
  check_slots(slots, n, capacity, Device::cpu(), "slots");
  for (const auto& [v, name] : {std::pair<const IndexView*, const char*>{&from_positions, "from_positions"},
                                {&to_positions, "to_positions"}}) {
    if (v->type != IndexType::i32 && v->type != IndexType::i64) fail(cat(name, ".type"), "i32 or i64", static_cast<int>(v->type));
    if (v->device.type != DeviceType::cpu) fail(cat(name, ".device"), "cpu", to_string(v->device));
    if (v->size != n) fail(cat(name, ".size"), cat(n, " (one per slot)"), v->size);
    if (n > 0 && v->data == nullptr) fail(cat(name, ".data"), "a non-null pointer", "nullptr");
    for (int64_t i = 0; i < n; ++i)
      if ((*v)[i] < 0 || (*v)[i] >= cos_sin_cache.max_position)
        fail(cat(name, "[", i, "]"), cat("in [0, ", cos_sin_cache.max_position, ") (the rows of cos_sin_cache)"), (*v)[i]);
  }
  // The rows in fp32 [n, heads, head_dim], rotated back from `from`, then forward to `to` (each
  // call checks its positions; nothing is written to the cache before both pass).
  std::vector<float> rows(static_cast<size_t>(std::max<int64_t>(n * heads * head_dim, 0)));
  const int64_t ce = dtype_size(kc.dtype);
  const auto at = [&](int64_t slot, int64_t h) {
    return kc.data + ((slot / kc.page_size) * kc.page_stride + (slot % kc.page_size) * kc.token_stride + h * kc.head_stride) * ce;
  };
  const RowStore load = row_store(kc.dtype, DType::f32), store = row_store(DType::f32, kc.dtype);
  for (int64_t i = 0; i < n; ++i) {
    if (slots[i] < 0) continue;
    for (int64_t h = 0; h < heads; ++h) {
      float* row = rows.data() + (i * heads + h) * head_dim;
      load(at(slots[i], h), row, head_dim, 1.0f);
      if (is_fp8(kc.dtype))
        for (int64_t d = 0; d < head_dim; ++d) row[d] *= kc.scales[static_cast<size_t>(h)];
    }
  }
  const TensorView view = TensorView::contiguous(rows.data(), DType::f32, {n, heads, head_dim});
  rotary_embedding(from_positions, view, std::nullopt, head_dim, cos_sin_cache, is_neox, rope_dim_offset, true, options);
  rotary_embedding(to_positions, view, std::nullopt, head_dim, cos_sin_cache, is_neox, rope_dim_offset, false, options);
  for (int64_t i = 0; i < n; ++i) {
    if (slots[i] < 0) continue;
    for (int64_t h = 0; h < heads; ++h)
      store(rows.data() + (i * heads + h) * head_dim, at(slots[i], h), head_dim, kc.scales[static_cast<size_t>(h)]);
  }
}

std::vector<int64_t> paged_kv_slots(const IndexView& batch_indices, const IndexView& kv_positions,
                                    const IndexView& kv_indices, const IndexView& kv_indptr,
                                    const IndexView& kv_last_page_len, int64_t page_size, int64_t num_pages) {
  if (page_size <= 0) fail("page_size", "> 0", page_size);
  if (num_pages < 0) fail("num_pages", ">= 0", num_pages);
  int64_t capacity = 0;
  if (__builtin_mul_overflow(num_pages, page_size, &capacity))
    fail("num_pages", cat("a count whose slots (num_pages * page_size ", page_size, ") fit in int64"), num_pages);
  for (const auto& [v, name] : {std::pair<const IndexView*, const char*>{&batch_indices, "batch_indices"},
                                {&kv_positions, "kv_positions"}, {&kv_indices, "kv_indices"},
                                {&kv_indptr, "kv_indptr"}, {&kv_last_page_len, "kv_last_page_len"}}) {
    if (v->device.type != DeviceType::cpu) fail(cat(name, ".device"), "cpu", to_string(v->device));
    if (v->size < 0) fail(cat(name, ".size"), ">= 0", v->size);
    if (v->size > 0 && v->data == nullptr) fail(cat(name, ".data"), "a non-null pointer", "nullptr");
  }
  if (kv_positions.size != batch_indices.size)
    fail("kv_positions.size", cat(batch_indices.size, " (as batch_indices)"), kv_positions.size);
  if (kv_indptr.size < 1) fail("kv_indptr.size", ">= 1 (requests + 1 boundaries)", kv_indptr.size);
  const int64_t requests = kv_indptr.size - 1;
  if (kv_last_page_len.size != requests)
    fail("kv_last_page_len.size", cat(requests, " (one per request: kv_indptr.size - 1)"), kv_last_page_len.size);
  if (kv_indptr[0] < 0) fail("kv_indptr[0]", ">= 0", kv_indptr[0]);
  for (int64_t b = 0; b < requests; ++b) {
    if (kv_indptr[b + 1] < kv_indptr[b])
      fail(cat("kv_indptr[", b + 1, "]"), cat(">= kv_indptr[", b, "] (", kv_indptr[b], "): boundaries never decrease"),
           kv_indptr[b + 1]);
    const int64_t owned = kv_indptr[b + 1] - kv_indptr[b];
    const int64_t last = kv_last_page_len[b];
    if (owned > 0 ? (last < 1 || last > page_size) : last != 0)
      fail(cat("kv_last_page_len[", b, "]"), owned > 0 ? cat("in [1, page_size (", page_size, ")]") : std::string("0 (no pages)"), last);
  }
  if (kv_indptr[requests] > kv_indices.size)
    fail(cat("kv_indptr[", requests, "]"), cat("<= kv_indices.size (", kv_indices.size, ")"), kv_indptr[requests]);
  std::vector<int64_t> slots(static_cast<size_t>(batch_indices.size));
  for (int64_t t = 0; t < batch_indices.size; ++t) {
    const int64_t b = batch_indices[t];
    if (b < 0 || b >= requests) fail(cat("batch_indices[", t, "]"), cat("in [0, ", requests, ")"), b);
    const int64_t owned = kv_indptr[b + 1] - kv_indptr[b];
    int64_t filled = 0;  // (saturated: such a request holds every position an int64 can name)
    if (owned > 0 && (__builtin_mul_overflow(owned - 1, page_size, &filled) ||
                      __builtin_add_overflow(filled, kv_last_page_len[b], &filled)))
      filled = std::numeric_limits<int64_t>::max();
    const int64_t pos = kv_positions[t];
    if (pos < 0 || pos >= filled)
      fail(cat("kv_positions[", t, "]"), cat("in [0, ", filled, ") (request ", b, "'s pages, filled)"), pos);
    const int64_t at = kv_indptr[b] + pos / page_size;
    const int64_t page = kv_indices[at];
    if (page < 0 || page >= num_pages) fail(cat("kv_indices[", at, "]"), cat("in [0, num_pages (", num_pages, "))"), page);
    slots[static_cast<size_t>(t)] = page * page_size + pos % page_size;
  }
  return slots;
}

}  // namespace ropekit
