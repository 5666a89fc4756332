// rotary_embedding: the engine layout mapped onto ropekit's views, the caller's cache as the rows.
#include "ropekit/engine.hpp"

#include <numeric>

#include "check.hpp"
#include "engine_call.hpp"
#include "half_float.hpp"

namespace ropekit {
namespace detail {

// query/key as (tokens, heads, head_size) or (batch, seq, heads, head_size) views.
TensorView heads_view(const TensorView& v, const std::string& name, int64_t head_size, int64_t tokens) {
  if (v.rank < 2 || v.rank > 4)
    fail(name + ".rank", "2 [T, H*head_size], 3 [T, H, head_size] or [B, S, H*head_size], or 4 [B, S, H, head_size]", v.rank);
  for (int d = 0; d < v.rank; ++d)
    if (v.shape[static_cast<size_t>(d)] < 0) fail(cat(name, ".shape[", d, "]"), ">= 0", v.shape[static_cast<size_t>(d)]);
  const int64_t last = v.shape[static_cast<size_t>(v.rank - 1)];
  const int64_t last_stride = v.strides[static_cast<size_t>(v.rank - 1)];
  TensorView out = v;
  const auto split_last = [&](int lead) {  // [..., H*head_size] -> [..., H, head_size]
    if (last % head_size != 0)
      fail(name + ".shape[-1]", cat("a multiple of head_size (", head_size, ")"), cat(last, " in ", v.shape_string()));
    if (last > head_size && last_stride != 1 && v.numel() > 0)  // (an empty view's strides are anything)
      fail(name + ".strides[-1]", "1 (heads * head_size contiguous)", last_stride);
    out.rank = lead + 2;
    out.shape[static_cast<size_t>(lead)] = last / head_size;
    out.shape[static_cast<size_t>(lead + 1)] = head_size;
    out.strides[static_cast<size_t>(lead)] = head_size;
    out.strides[static_cast<size_t>(lead + 1)] = 1;
  };
  if (v.rank == 2) {
    split_last(1);
  } else if (v.rank == 3 && !(last == head_size && v.shape[0] == tokens)) {
    split_last(2);  // [B, S, H*head_size]
  } else if (last != head_size) {
    fail(name + ".shape[-1]", cat("head_size (", head_size, ")"), cat(last, " in ", v.shape_string()));
  }
  const int64_t view_tokens = out.rank == 4 ? out.shape[0] * out.shape[1] : out.shape[0];
  if (view_tokens != tokens)
    fail(name + ".shape", cat(tokens, " tokens (one per position)"), cat(v.shape_string(), " (", view_tokens, " tokens)"));
  return out;
}

namespace {

// A [T, H, D] view as [B, S, H, D] with the (B, S) of `like` (T = B * S).
TensorView split_tokens(const TensorView& v, const TensorView& like) {
  TensorView out = v;
  out.rank = 4;
  out.shape = {like.shape[0], like.shape[1], v.shape[1], v.shape[2]};
  out.strides = {like.shape[1] * v.strides[0], v.strides[0], v.strides[1], v.strides[2]};
  return out;
}

// The rotated channels [offset, offset + rot_dim) of each head (in place: the others are untouched).
TensorView window(TensorView v, int64_t offset, int64_t rot_dim) {
  const auto last = static_cast<size_t>(v.rank - 1);
  v.shape[last] = rot_dim;
  if (v.data != nullptr) v.data = static_cast<char*>(v.data) + offset * dtype_size(v.dtype);
  return v;
}

void check_cache(const CosSinCacheView& c, const TensorView& query, int64_t head_size, int64_t rope_dim_offset) {
  if (c.rot_dim <= 0 || c.rot_dim % 2 != 0) fail("cos_sin_cache.rot_dim", "an even number > 0", c.rot_dim);
  if (c.rot_dim > head_size) fail("cos_sin_cache.rot_dim", cat("<= head_size (", head_size, ")"), c.rot_dim);
  if (rope_dim_offset < 0) fail("rope_dim_offset", ">= 0", rope_dim_offset);
  if (rope_dim_offset > head_size - c.rot_dim)
    fail("rope_dim_offset", cat("<= head_size - rot_dim (", head_size, " - ", c.rot_dim, ")"), rope_dim_offset);
  if (c.max_position < 0) fail("cos_sin_cache.max_position", ">= 0", c.max_position);
  if (c.max_position > 0 && c.data == nullptr) fail("cos_sin_cache.data", "a non-null pointer", "nullptr");
  if (c.dtype != DType::f32 && c.dtype != DType::f16 && c.dtype != DType::bf16)
    fail("cos_sin_cache.dtype", "f32, f16 or bf16", to_string(c.dtype));
  if (c.max_position > 0 && !detail::aligned_to(c.data, dtype_size(c.dtype)))
    detail::fail_misaligned(c.data, dtype_size(c.dtype), "cos_sin_cache.data", to_string(c.dtype));
  if (!(c.device == query.device))
    fail("cos_sin_cache.device", cat(to_string(query.device), " (as query)"), to_string(c.device));
  if (c.device.type != DeviceType::cpu && c.dtype != DType::f32)
    fail("cos_sin_cache.dtype", "f32 on a CUDA device", to_string(c.dtype));
}

// f16/bf16 rows widened to fp32, one per token, so that token t reads row t.
std::vector<float> widened_rows(const CosSinCacheView& c, const IndexView& positions) {
  std::vector<float> rows(static_cast<size_t>(positions.size * c.rot_dim));
  const auto* src = static_cast<const uint16_t*>(c.data);
  for (int64_t t = 0; t < positions.size; ++t) {
    const uint16_t* row = src + positions[t] * c.rot_dim;
    float* dst = rows.data() + t * c.rot_dim;
    for (int64_t i = 0; i < c.rot_dim; ++i)
      dst[i] = c.dtype == DType::f16 ? detail::half_to_float(row[i]) : detail::bf16_to_float(row[i]);
  }
  return rows;
}

// The spec of the rotated window: head_dim = rotary_dim = rot_dim. Kept per thread for the last
// shape (decode calls repeat it; building a spec costs about as much as the rotation of a token).
const RopeSpec& window_spec(int64_t rot_dim, Style style, const std::optional<MRope>& mrope) {
  thread_local std::optional<RopeSpec> last;
  if (!last || last->rotary_dim() != rot_dim || last->style() != style || last->mrope() != mrope) {
    SpecParams sp;
    sp.head_dim = rot_dim;
    sp.rotary_dim = rot_dim;
    sp.style = style;
    sp.mrope = mrope;
    last.emplace(sp);
  }
  return *last;
}

}  // namespace

void prepare_engine_call(EngineCall& call, const IndexView& positions, const TensorView& query,
                         const std::optional<TensorView>& key, int64_t head_size, const CosSinCacheView& cos_sin_cache,
                         bool is_neox, int64_t rope_dim_offset, bool inverse, const EngineOptions& options) {
  if (head_size <= 0) fail("head_size", "> 0", head_size);
  if (options.num_threads < 0) fail("options.num_threads", ">= 0 (0: every core)", options.num_threads);
  if (positions.type != IndexType::i32 && positions.type != IndexType::i64)
    fail("positions.type", "i32 or i64", static_cast<int>(positions.type));
  if (positions.size < 0) fail("positions.size", ">= 0", positions.size);
  if (positions.size > 0 && positions.data == nullptr) fail("positions.data", "a non-null pointer", "nullptr");
  if (positions.size > 0) {
    const bool i32 = positions.type == IndexType::i32;
    if (!detail::aligned_to(positions.data, i32 ? 4 : 8)) detail::fail_misaligned(positions.data, i32 ? 4 : 8, "positions.data", i32 ? "i32" : "i64");
  }
  if (!(positions.device == query.device))
    fail("positions.device", cat(to_string(query.device), " (as query)"), to_string(positions.device));
  check_cache(cos_sin_cache, query, head_size, rope_dim_offset);
  call.axes = options.mrope ? 3 : 1;
  if (positions.size % call.axes != 0)
    fail("positions.size", "3 T (M-RoPE's t, h, w ids of every token, axis-major)", positions.size);
  const int64_t tokens = call.tokens = positions.size / call.axes;
  TensorView q = window(heads_view(query, "query", head_size, tokens), rope_dim_offset, cos_sin_cache.rot_dim);
  std::optional<TensorView> k;
  if (key) {
    k = window(heads_view(*key, "key", head_size, tokens), rope_dim_offset, cos_sin_cache.rot_dim);
    // [T, H, D] beside [B, S, H, D] (a rank-3 [B, S, H*D] read as tokens x heads when it could be
    // both): the same tokens in the same order, split as the other's (B, S).
    if (k->rank != q.rank) (k->rank == 3 ? *k : q) = split_tokens(k->rank == 3 ? *k : q, k->rank == 3 ? q : *k);
  }
  const bool host_positions = positions.device.type == DeviceType::cpu;
  if (host_positions) {
    for (int64_t t = 0; t < positions.size; ++t) {
      const int64_t p = positions[t];
      if (p < 0 || p >= cos_sin_cache.max_position)
        fail(cat("positions[", t, "]"), cat("in [0, ", cos_sin_cache.max_position, ") (the rows of cos_sin_cache)"), p);
    }
  }

  const RopeSpec& spec = window_spec(cos_sin_cache.rot_dim, is_neox ? Style::half : Style::interleaved, options.mrope);
  const RopeTensors tensors{q, k, std::nullopt, std::nullopt};

  // f16/bf16 caches: the rows this call reads, widened, read by token index instead of position.
  call.widened.clear();
  Positions by = Positions::token_ids(positions, call.axes);
  if (cos_sin_cache.dtype != DType::f32 && tokens > 0) {  // (M-RoPE: id i of every axis reads widened row i)
    call.widened = widened_rows(cos_sin_cache, positions);
    call.token_index.resize(static_cast<size_t>(positions.size));
    std::iota(call.token_index.begin(), call.token_index.end(), int64_t{0});
    by = Positions::token_ids(IndexView(call.token_index.data(), positions.size, positions.device), call.axes);
  }
  detail::CheckedCall c = detail::check_call(tensors, by, spec, {"query", "key"});
  call.nothing_to_do = tokens == 0 || (q.numel() == 0 && (!k || k->numel() == 0));

  auto& p = call.params = c.params;
  thread_local std::vector<double> no_frequencies;
  thread_local std::vector<float> no_frequencies_f32;
  no_frequencies.resize(static_cast<size_t>(spec.pairs()), 0.0);
  no_frequencies_f32.resize(static_cast<size_t>(spec.pairs()), 0.0f);
  p.rows = call.widened.empty() ? static_cast<const float*>(cos_sin_cache.data) : call.widened.data();
  p.rows_count = call.widened.empty() ? cos_sin_cache.max_position : positions.size;
  // Every position reads a row (host positions were checked above; the CUDA kernel refuses device
  // positions at or past rows_count when there is no table): the frequencies are never used.
  p.inv_freq = no_frequencies.data();
  p.inv_freq_f32 = no_frequencies_f32.data();
  p.rows_only = true;
  p.direction = inverse ? Direction::inverse : Direction::forward;  // attention factor 1: inverse = R(-theta)
  p.stream = options.stream;
  p.num_threads = options.num_threads;
}

}  // namespace detail

void rotary_embedding(const IndexView& positions, const TensorView& query, const std::optional<TensorView>& key,
                      int64_t head_size, const CosSinCacheView& cos_sin_cache, bool is_neox, int64_t rope_dim_offset,
                      bool inverse, const EngineOptions& options) {
  thread_local detail::EngineCall call;  // its buffers' capacity outlives the call: decode allocates nothing
  detail::prepare_engine_call(call, positions, query, key, head_size, cos_sin_cache, is_neox, rope_dim_offset, inverse,
                              options);
  if (!call.nothing_to_do) detail::dispatch(call.params);
}

std::vector<float> cos_sin_cache(const RopeSpec& spec, int64_t max_position, const TableOptions& options) {
  const RopeTable table(spec, max_position, options);
  const auto rows = table.rows();
  return {rows.begin(), rows.end()};
}

}  // namespace ropekit
