// Fuzz target 5: rotary_embedding_with_kv_cache, rerotate_kv_cache and paged_kv_slots on arbitrary shapes, strides,
// dtypes (FP8 caches included), layouts, slots, positions and scales. Every view lies inside one
// real buffer (fresh each run, so ASan guards both ends); views may overlap each other. Invariants:
//  - on ropekit::Error the whole buffer is unchanged;
//  - on success only bytes of query, k_cache and v_cache changed, and key and value did not;
//  - nothing else escapes (any other exception aborts).
#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "fuzz_common.hpp"
#include "ropekit/ropekit.hpp"

using namespace ropekit;
using ropekit_fuzz::nasty_double;
using ropekit_fuzz::nasty_int;
using ropekit_fuzz::violated;

namespace {

constexpr int64_t kBytes = 1 << 15;

// A view of `rank` dims at a random offset with small extents and strides (last often 1); nullopt
// when it does not fit in the buffer.
std::optional<TensorView> view_in(FuzzedDataProvider& in, unsigned char* base, int rank, DType dtype) {
  TensorView v;
  v.rank = rank;
  v.dtype = dtype;
  const int64_t e = dtype_size(dtype);
  for (int d = 0; d < rank; ++d) {
    v.shape[static_cast<size_t>(d)] = in.ConsumeIntegralInRange<int64_t>(0, d == rank - 1 ? 40 : 9);
  }
  int64_t stride = 1;
  for (int d = rank - 1; d >= 0; --d) {
    const bool dense = in.ConsumeIntegralInRange<int>(0, 3) != 0;
    v.strides[static_cast<size_t>(d)] = dense ? stride : in.ConsumeIntegralInRange<int64_t>(0, 600);
    stride *= std::max<int64_t>(v.shape[static_cast<size_t>(d)], 1);
  }
  int64_t extent = 0;
  bool empty = false;
  for (int d = 0; d < rank; ++d) {
    if (v.shape[static_cast<size_t>(d)] == 0) empty = true;
    else extent += (v.shape[static_cast<size_t>(d)] - 1) * v.strides[static_cast<size_t>(d)];
  }
  const int64_t offset = in.ConsumeIntegralInRange<int64_t>(0, kBytes / e - 1);
  if (!empty && (offset + extent + 1) * e > kBytes) return std::nullopt;
  v.data = base + offset * e;
  return v;
}

// Marks the bytes of v (its elements) in `touched`.
void mark(const TensorView& v, const unsigned char* base, std::vector<bool>& touched) {
  if (v.numel() == 0) return;
  const int64_t e = dtype_size(v.dtype);
  int64_t idx[4] = {0, 0, 0, 0};
  for (;;) {
    int64_t off = 0;
    for (int d = 0; d < v.rank; ++d) off += idx[d] * v.strides[static_cast<size_t>(d)];
    const int64_t at = static_cast<const unsigned char*>(v.data) - base + off * e;
    for (int64_t b = 0; b < e; ++b) touched[static_cast<size_t>(at + b)] = true;
    int d = v.rank - 1;
    while (d >= 0 && ++idx[d] == v.shape[static_cast<size_t>(d)]) idx[d--] = 0;
    if (d < 0) return;
  }
}

DType pick_dtype(FuzzedDataProvider& in, bool cache) {
  static constexpr DType all[] = {DType::f32, DType::f16, DType::bf16, DType::f64, DType::f8_e4m3, DType::f8_e5m2};
  const auto i = in.ConsumeIntegralInRange<size_t>(0, cache ? 5 : 3);
  return all[i];
}

void fuzz_slots(FuzzedDataProvider& in) {
  std::vector<int64_t> arrays[5];
  for (auto& a : arrays) {
    a.resize(in.ConsumeIntegralInRange<size_t>(0, 8));
    for (auto& x : a) x = nasty_int(in, -2, 20);
  }
  try {
    const auto slots = paged_kv_slots(IndexView(arrays[0].data(), static_cast<int64_t>(arrays[0].size())),
                                      IndexView(arrays[1].data(), static_cast<int64_t>(arrays[1].size())),
                                      IndexView(arrays[2].data(), static_cast<int64_t>(arrays[2].size())),
                                      IndexView(arrays[3].data(), static_cast<int64_t>(arrays[3].size())),
                                      IndexView(arrays[4].data(), static_cast<int64_t>(arrays[4].size())),
                                      nasty_int(in, 1, 8), nasty_int(in, 0, 20));
    if (slots.size() != arrays[0].size()) violated("paged_kv_slots: one slot per token");
  } catch (const Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  if (in.ConsumeIntegralInRange<int>(0, 7) == 0) {
    fuzz_slots(in);
    return 0;
  }
  std::vector<unsigned char> buffer(static_cast<size_t>(kBytes));
  for (auto& b : buffer) b = in.ConsumeIntegral<unsigned char>();
  unsigned char* base = buffer.data();
  const DType dtype = pick_dtype(in, false);
  const auto query = view_in(in, base, in.ConsumeIntegralInRange<int>(2, 3), dtype);
  const auto key = view_in(in, base, in.ConsumeIntegralInRange<int>(2, 3), in.ConsumeIntegralInRange<int>(0, 7) ? dtype : pick_dtype(in, false));
  const bool with_value = in.ConsumeBool();
  const auto value = with_value ? view_in(in, base, in.ConsumeIntegralInRange<int>(2, 3), dtype) : std::optional<TensorView>();
  const DType cache_dtype = pick_dtype(in, true);
  const auto k_cache = view_in(in, base, 4, cache_dtype);
  const auto v_cache = with_value ? view_in(in, base, 4, cache_dtype) : std::optional<TensorView>(TensorView{});
  if (!query || !key || (with_value && !value) || !k_cache || !v_cache) return 0;
  const int64_t head_size = nasty_int(in, 1, 40);
  const int64_t rot = 2 * in.ConsumeIntegralInRange<int64_t>(0, 8);
  const int64_t max_pos = in.ConsumeIntegralInRange<int64_t>(0, 20);
  std::vector<float> table(static_cast<size_t>(std::max<int64_t>(max_pos * rot, 1)));
  for (auto& x : table) x = static_cast<float>(nasty_double(in, -1, 1));
  const CosSinCacheView cache{table.data(), DType::f32, Device::cpu(), max_pos, rot};
  const int64_t tokens = in.ConsumeIntegralInRange<int64_t>(0, 12);
  std::vector<int64_t> positions(static_cast<size_t>(tokens)), slots(static_cast<size_t>(in.ConsumeBool() ? tokens : tokens + 1));
  for (auto& p : positions) p = nasty_int(in, 0, max_pos);
  for (auto& s : slots) s = nasty_int(in, -1, 40);
  std::vector<float> k_scale(in.ConsumeIntegralInRange<size_t>(0, 3)), v_scale(in.ConsumeIntegralInRange<size_t>(0, 3));
  for (auto& s : k_scale) s = static_cast<float>(nasty_double(in, 0.001, 2));
  for (auto& s : v_scale) s = static_cast<float>(nasty_double(in, 0.001, 2));
  PagedKvCache kv{*k_cache, *v_cache, in.ConsumeBool() ? KvLayout::nhd : KvLayout::hnd, k_scale, v_scale};
  EngineOptions options;
  options.num_threads = in.ConsumeIntegralInRange<int>(0, 3);
  const auto before = buffer;
  if (in.ConsumeIntegralInRange<int>(0, 3) == 0) {  // re-rotation of the k cache: only it may change
    std::vector<int64_t> to(positions.size());
    for (auto& p : to) p = nasty_int(in, 0, max_pos);
    try {
      rerotate_kv_cache(IndexView(slots.data(), static_cast<int64_t>(slots.size())), IndexView(positions.data(), tokens),
                        IndexView(to.data(), tokens), cache, in.ConsumeBool(), *k_cache, kv.layout, k_scale,
                        in.ConsumeIntegralInRange<int64_t>(0, 8), options);
    } catch (const Error&) {
      if (buffer != before) violated("an Error of rerotate_kv_cache left the buffer changed");
      return 0;
    }
    std::vector<bool> writable(buffer.size(), false);
    mark(*k_cache, base, writable);
    for (size_t i = 0; i < buffer.size(); ++i)
      if (buffer[i] != before[i] && !writable[i]) violated("rerotate_kv_cache changed a byte outside k_cache");
    return 0;
  }
  try {
    rotary_embedding_with_kv_cache(IndexView(positions.data(), tokens), *query, *key, value, head_size, cache,
                                   in.ConsumeBool(), IndexView(slots.data(), static_cast<int64_t>(slots.size())), kv,
                                   in.ConsumeIntegralInRange<int64_t>(0, 8), options);
  } catch (const Error&) {
    if (buffer != before) violated("an Error left the buffer changed");
    return 0;
  }
  std::vector<bool> writable(buffer.size(), false), read_only(buffer.size(), false);
  for (const TensorView* v : {&*query, &*k_cache, &*v_cache}) mark(*v, base, writable);
  mark(*key, base, read_only);
  if (value) mark(*value, base, read_only);
  for (size_t i = 0; i < buffer.size(); ++i) {
    if (buffer[i] == before[i]) continue;
    if (!writable[i]) violated("a byte outside query and the caches changed");
    if (read_only[i]) violated("a byte of key or value changed");
  }
  return 0;
}
