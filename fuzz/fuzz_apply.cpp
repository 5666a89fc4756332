// Fuzz target 2: argument validation of apply_rope. Shapes, strides, ranks, dtypes, devices,
// positions (offsets, ids, cu_seqlens, optional offsets) and options are arbitrary; every view points
// into one real buffer (fresh each run, so ASan guards both ends) and every index array is a real
// array of exactly its stated size. Invariants:
//  - a view whose byte extent overflows int64 is rejected;
//  - a call is made only with views the harness knows lie inside the buffer, or that ropekit must
//    reject (overflow, negative sizes, bad rank), or that touch nothing (an empty dimension);
//  - on ropekit::Error the whole buffer is unchanged; on success nothing outside the written views
//    (q_out or q, k_out or k) changed; nothing else escapes (any other exception aborts).
#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "fuzz_common.hpp"
#include "ropekit/explicit.hpp"
#include "ropekit/ropekit.hpp"

using namespace ropekit;
using ropekit_fuzz::nasty_double;
using ropekit_fuzz::nasty_int;
using ropekit_fuzz::violated;

namespace {

constexpr int64_t kBytes = 1 << 14;

enum class Fit { inside, outside, overflow, empty, invalid };

struct Arena {
  std::vector<unsigned char> bytes = std::vector<unsigned char>(static_cast<size_t>(kBytes));
  unsigned char* base() { return bytes.data(); }
};

int64_t esize_of(DType d) { return d == DType::f64 ? 8 : d == DType::f32 ? 4 : 2; }

TensorView make_view(FuzzedDataProvider& in, Arena& arena, int64_t head_dim, const TensorView* like) {
  TensorView v;
  v.rank = in.ConsumeIntegralInRange<int>(0, 15) == 0 ? in.ConsumeIntegralInRange<int>(-2, 6)
                                                     : (like && in.ConsumeBool() ? like->rank : in.ConsumeIntegralInRange<int>(3, 4));
  v.dtype = in.ConsumeIntegralInRange<int>(0, 31) == 0 ? static_cast<DType>(in.ConsumeIntegral<uint8_t>())
                                                      : (like && in.ConsumeBool() ? like->dtype : static_cast<DType>(in.ConsumeIntegralInRange<int>(0, 2)));
  if (in.ConsumeIntegralInRange<int>(0, 31) == 0) v.device = Device::cuda(in.ConsumeIntegralInRange<int>(-1, 2));
  const int r = std::clamp(v.rank, 0, 4);
  for (int d = 0; d < r; ++d) {
    int64_t extent = in.ConsumeIntegralInRange<int>(0, 7) == 0 ? nasty_int(in, -2, 64) : in.ConsumeIntegralInRange<int64_t>(0, 6);
    if (like && like->rank == v.rank && in.ConsumeIntegralInRange<int>(0, 3) != 0) extent = like->shape[static_cast<size_t>(d)];
    if (d == r - 1 && in.ConsumeIntegralInRange<int>(0, 7) != 0) extent = head_dim;
    v.shape[static_cast<size_t>(d)] = extent;
  }
  // Strides: row-major, a permutation of it (BHSD), padded, or arbitrary.
  int64_t stride = 1;
  for (int d = r - 1; d >= 0; --d) {
    v.strides[static_cast<size_t>(d)] = stride;
    const int64_t step = std::max<int64_t>(std::min<int64_t>(v.shape[static_cast<size_t>(d)], 1 << 20), 1) +
                         (in.ConsumeIntegralInRange<int>(0, 3) == 0 ? in.ConsumeIntegralInRange<int64_t>(0, 3) : 0);
    if (__builtin_mul_overflow(stride, step, &stride)) stride = int64_t{1} << 40;
  }
  if (r == 4 && in.ConsumeBool()) std::swap(v.strides[1], v.strides[2]);
  for (int d = 0; d < r; ++d)
    if (in.ConsumeIntegralInRange<int>(0, 9) == 0) v.strides[static_cast<size_t>(d)] = nasty_int(in, -2, 4096);
  const int64_t es = esize_of(v.dtype);
  if (in.ConsumeIntegralInRange<int>(0, 31) == 0) {
    v.data = nullptr;
  } else {
    v.data = arena.base() + es * in.ConsumeIntegralInRange<int64_t>(0, kBytes / es - 1);
    // Now and then an address that is not a multiple of the element size (a named error).
    if (in.ConsumeIntegralInRange<int>(0, 31) == 0) v.data = static_cast<unsigned char*>(v.data) + 1;
  }
  return v;
}

// Where the view's bytes lie relative to the arena, computed in 128-bit so nothing overflows here.
// ropekit's documented bound: the non-zero extents times the element size, and the byte offset of
// the last element, stay below 2^62 (else Error).
Fit fit_of(const TensorView& v, Arena& arena) {
  if (v.rank != 3 && v.rank != 4) return Fit::invalid;
  if (v.dtype != DType::f32 && v.dtype != DType::f16 && v.dtype != DType::bf16 && v.dtype != DType::f64)
    return Fit::invalid;
  for (int d = 0; d < v.rank; ++d)
    // A negative stride is invalid only where it is used: ropekit ignores those of extent-1 dims.
    if (v.shape[static_cast<size_t>(d)] < 0 || (v.strides[static_cast<size_t>(d)] < 0 && v.shape[static_cast<size_t>(d)] > 1))
      return Fit::invalid;
  const __int128 limit = __int128{1} << 62;
  const __int128 es = esize_of(v.dtype);
  __int128 bytes = es, last = 0;
  bool empty = false;
  for (int d = 0; d < v.rank; ++d) {  // each term < 2^126; stop growing once past the limit
    const int64_t n = v.shape[static_cast<size_t>(d)];
    if (n == 0) {
      empty = true;
      continue;
    }
    if (bytes <= limit) bytes *= n;
    if (last <= limit) last += static_cast<__int128>(n - 1) * v.strides[static_cast<size_t>(d)];
  }
  if (bytes > limit) return Fit::overflow;
  if (empty) return Fit::empty;
  if (last >= limit / es) return Fit::overflow;
  if (v.data == nullptr) return Fit::invalid;
  const __int128 offset = static_cast<unsigned char*>(v.data) - arena.base();
  return offset + (last + 1) * es <= kBytes ? Fit::inside : Fit::outside;
}

IndexView make_index(FuzzedDataProvider& in, std::vector<int64_t>& i64, std::vector<int32_t>& i32, int64_t wanted,
                     int64_t high) {
  int64_t n = in.ConsumeIntegralInRange<int>(0, 3) == 0 ? in.ConsumeIntegralInRange<int64_t>(0, 40) : wanted;
  n = std::clamp<int64_t>(n, 0, 256);
  const bool wide = in.ConsumeBool();
  i64.assign(static_cast<size_t>(n), 0);
  i32.assign(static_cast<size_t>(n), 0);
  for (int64_t j = 0; j < n; ++j) {
    const int64_t value = in.ConsumeIntegralInRange<int>(0, 7) == 0 ? nasty_int(in, -1, high) : in.ConsumeIntegralInRange<int64_t>(0, high);
    i64[static_cast<size_t>(j)] = value;
    i32[static_cast<size_t>(j)] = static_cast<int32_t>(value);
  }
  const Device device = in.ConsumeIntegralInRange<int>(0, 31) == 0 ? Device::cuda() : Device::cpu();
  if (wide) return IndexView(i64.data(), n, device);
  return IndexView(i32.data(), n, device);
}

// cu_seqlens: mostly a valid increasing sequence ending at `tokens`, sometimes arbitrary.
IndexView make_cu(FuzzedDataProvider& in, std::vector<int64_t>& i64, std::vector<int32_t>& i32, int64_t tokens) {
  const int64_t near = std::clamp<int64_t>(tokens, 0, 1 << 20) + 2;
  if (in.ConsumeIntegralInRange<int>(0, 3) == 0) return make_index(in, i64, i32, 3, near);
  const int64_t sequences = in.ConsumeIntegralInRange<int64_t>(1, 6);
  i64.assign(static_cast<size_t>(sequences + 1), 0);
  for (int64_t b = 1; b < sequences; ++b)
    i64[static_cast<size_t>(b)] = std::clamp<int64_t>(in.ConsumeIntegralInRange<int64_t>(0, std::max<int64_t>(tokens, 0)), i64[static_cast<size_t>(b - 1)], std::max<int64_t>(tokens, 0));
  i64[static_cast<size_t>(sequences)] = tokens;
  if (in.ConsumeIntegralInRange<int>(0, 7) == 0) i64[in.ConsumeIntegralInRange<size_t>(0, i64.size() - 1)] = nasty_int(in, -1, near);
  i32.assign(i64.begin(), i64.end());
  if (in.ConsumeBool()) return IndexView(i64.data(), static_cast<int64_t>(i64.size()));
  return IndexView(i32.data(), static_cast<int64_t>(i32.size()));
}

void mark(const TensorView& v, Arena& arena, std::vector<bool>& writable) {
  const int64_t es = esize_of(v.dtype);
  const auto* base = static_cast<unsigned char*>(v.data);
  std::array<int64_t, 4> idx{};
  const int64_t n = v.numel();
  for (int64_t e = 0; e < n; ++e) {
    int64_t off = 0;
    for (int d = 0; d < v.rank; ++d) off += idx[static_cast<size_t>(d)] * v.strides[static_cast<size_t>(d)];
    const int64_t at = (base - arena.base()) + off * es;
    for (int64_t b = 0; b < es; ++b) writable[static_cast<size_t>(at + b)] = true;
    for (int d = v.rank - 1; d >= 0; --d) {
      if (++idx[static_cast<size_t>(d)] < v.shape[static_cast<size_t>(d)]) break;
      idx[static_cast<size_t>(d)] = 0;
    }
  }
}

}  // namespace

// apply_explicit: random x / out views and coefficient tables; a rejected call writes nothing, an
// accepted one writes only inside its output view.
int fuzz_explicit(FuzzedDataProvider& in) {
  const int64_t head_dim = 2 * in.ConsumeIntegralInRange<int64_t>(1, 12);
  Arena arena;
  for (size_t i = 0; i < arena.bytes.size(); ++i) arena.bytes[i] = static_cast<unsigned char>(i * 29 + 5);
  const TensorView x = make_view(in, arena, head_dim, nullptr);
  std::optional<TensorView> out;
  if (in.ConsumeBool()) out = make_view(in, arena, head_dim, &x);
  for (const TensorView* v : {&x, out ? static_cast<const TensorView*>(&*out) : nullptr})
    if (v && fit_of(*v, arena) == Fit::outside) return 0;
  ExplicitCoefficients co;
  co.width = in.ConsumeIntegralInRange<int>(0, 15) == 0 ? nasty_int(in, -2, 30) : 2 * in.ConsumeIntegralInRange<int64_t>(1, head_dim / 2);
  co.seq = in.ConsumeIntegralInRange<int>(0, 15) == 0 ? nasty_int(in, -1, 70) : (x.rank == 4 ? x.shape[1] : x.shape[0]);
  std::vector<float> cos_t, sin_t;
  if (co.seq > 0 && co.seq <= 64 && co.width > 0 && co.width <= 64) {
    cos_t.assign(static_cast<size_t>(co.seq * co.width), 0.5f);
    sin_t.assign(cos_t.size(), -0.25f);
    co.cos = cos_t.data();
    co.sin = sin_t.data();
  }
  const Style style = in.ConsumeBool() ? Style::half : Style::interleaved;
  const auto direction = static_cast<Direction>(in.ConsumeIntegralInRange<int>(0, 3));
  const std::vector<unsigned char> before = arena.bytes;
  try {
    apply_explicit(x, out, co, style, direction);
  } catch (const Error& e) {
    if (std::strncmp(e.what(), "ropekit: ", 9) != 0) violated("Error message starts with 'ropekit: '");
    if (arena.bytes != before) violated("a rejected apply_explicit left the buffer unchanged");
    return 0;
  }
  std::vector<bool> writable(static_cast<size_t>(kBytes), false);
  mark(out ? *out : x, arena, writable);
  for (size_t i = 0; i < arena.bytes.size(); ++i)
    if (!writable[i] && arena.bytes[i] != before[i]) violated("an accepted apply_explicit wrote only inside its output");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  if (in.ConsumeIntegralInRange<int>(0, 4) == 0) return fuzz_explicit(in);
  const int64_t head_dim = 2 * in.ConsumeIntegralInRange<int64_t>(1, 12);
  SpecParams sp;
  sp.head_dim = head_dim;
  sp.rotary_dim = in.ConsumeBool() ? 0 : 2 * in.ConsumeIntegralInRange<int64_t>(1, head_dim / 2);
  sp.style = in.ConsumeBool() ? Style::half : Style::interleaved;
  if (in.ConsumeIntegralInRange<int>(0, 3) == 0) sp.xpos = Xpos{};
  if (in.ConsumeIntegralInRange<int>(0, 3) == 0 && (sp.rotary_dim == 0 ? head_dim : sp.rotary_dim) > 2)
    sp.scaling = scaling::DynamicNtk{.factor = 2.0, .original_max = 16};
  // Multi-axis maps (valid ones: the spec's own checks are fuzz_spec's): M-RoPE sections or axial.
  const int64_t pairs = (sp.rotary_dim == 0 ? head_dim : sp.rotary_dim) / 2;
  if (!sp.xpos) {
    switch (in.ConsumeIntegralInRange<int>(0, 3)) {
      case 1: {
        const int64_t h = in.ConsumeIntegralInRange<int64_t>(0, (pairs + 1) / 3);
        const int64_t w = in.ConsumeIntegralInRange<int64_t>(0, pairs / 3);
        sp.mrope = MRope{{pairs - h - w, h, w}, in.ConsumeBool()};
        break;
      }
      case 2:
        if (pairs % 2 == 0 && std::holds_alternative<scaling::None>(sp.scaling)) sp.axial = Axial2d{in.ConsumeBool()};
        break;
      default: break;
    }
  }
  const RopeSpec spec(sp);
  // A table, or one derived from it (grown / rescaled): derived tables leave the original as it was.
  const RopeTable original(spec, in.ConsumeIntegralInRange<int64_t>(0, 96));
  const std::vector<float> original_rows(original.rows().begin(), original.rows().end());
  RopeTable table = original;
  switch (in.ConsumeIntegralInRange<int>(0, 2)) {
    case 1: table = original.grown(in.ConsumeIntegralInRange<int64_t>(0, 200)); break;
    case 2: table = original.for_seq_len(in.ConsumeIntegralInRange<int64_t>(0, 200)); break;
    default: break;
  }
  if (!std::equal(original_rows.begin(), original_rows.end(), original.rows().begin()))
    violated("grown / for_seq_len leave the original table unchanged");

  Arena arena;
  for (size_t i = 0; i < arena.bytes.size(); ++i) arena.bytes[i] = static_cast<unsigned char>(i * 37 + 11);

  RopeTensors t;
  t.q = make_view(in, arena, head_dim, nullptr);
  if (in.ConsumeBool()) t.k = make_view(in, arena, head_dim, &t.q);
  if (in.ConsumeBool()) t.q_out = make_view(in, arena, head_dim, &t.q);
  if (in.ConsumeIntegralInRange<int>(0, 7) == 0 || (t.k && in.ConsumeBool())) t.k_out = make_view(in, arena, head_dim, t.k ? &*t.k : &t.q);

  bool must_reject = false;
  for (const TensorView* v : {&t.q, t.k ? &*t.k : nullptr, t.q_out ? &*t.q_out : nullptr, t.k_out ? &*t.k_out : nullptr}) {
    if (!v) continue;
    switch (fit_of(*v, arena)) {
      case Fit::outside: return 0;  // a lying view: not ropekit's to detect
      case Fit::overflow: must_reject = true; break;
      default: break;
    }
  }

  const int64_t q_batch = t.q.rank == 4 ? t.q.shape[0] : 1;
  const int64_t q_seq = t.q.rank == 4 ? t.q.shape[1] : (t.q.rank == 3 ? t.q.shape[0] : 0);
  std::vector<int64_t> a64, b64;
  std::vector<int32_t> a32, b32;
  Positions positions;
  const int kind = in.ConsumeIntegralInRange<int>(0, 63) == 0 ? in.ConsumeIntegralInRange<int>(-1, 6) : in.ConsumeIntegralInRange<int>(0, 3);
  // Positions within the table's rows, or past them (computed in the kernel).
  const int64_t high = in.ConsumeBool() ? 300 : std::max<int64_t>(table.size() - 1, 0);
  switch (kind) {
    case 0: positions = Positions::from_offset(in.ConsumeIntegralInRange<int>(0, 3) == 0 ? nasty_int(in, -1, high) : in.ConsumeIntegralInRange<int64_t>(0, high)); break;
    case 1: positions = Positions::per_sequence(make_index(in, a64, a32, q_batch, high)); break;
    case 2: {  // one axis, the spec's axes, or any count (ids sized for it, or not)
      const int64_t axes = in.ConsumeIntegralInRange<int>(0, 15) == 0 ? nasty_int(in, -1, 4)
                           : in.ConsumeBool()                         ? spec.position_axes()
                                                                      : 1;
      const int64_t tokens = std::clamp<int64_t>(q_batch, 0, 64) * std::clamp<int64_t>(q_seq, 0, 64);
      positions = Positions::token_ids(make_index(in, a64, a32, tokens * std::clamp<int64_t>(axes, 1, 3), high), axes);
      break;
    }
    case 3:
      positions = Positions::packed(make_cu(in, a64, a32, q_seq),
                                    in.ConsumeBool() ? IndexView{} : make_index(in, b64, b32, 3, high));
      break;
    default: positions.kind = static_cast<Positions::Kind>(kind);
  }

  ApplyOptions options;
  options.direction = static_cast<Direction>(in.ConsumeIntegralInRange<int>(0, 15) == 0 ? in.ConsumeIntegralInRange<int>(-1, 4) : in.ConsumeIntegralInRange<int>(0, 2));
  options.compute_sincos = in.ConsumeBool();
  options.num_threads = in.ConsumeIntegralInRange<int>(0, 7) == 0 ? static_cast<int>(nasty_int(in, -2, 3)) : 1;
  options.xpos_center = in.ConsumeIntegralInRange<int>(0, 7) == 0 ? nasty_double(in, -100, 100) : 0.0;
  const bool with_spec = in.ConsumeIntegralInRange<int>(0, 7) == 0;

  const std::vector<unsigned char> before = arena.bytes;
  bool accepted = false;
  try {
    (void)required_table_size(t, positions);
  } catch (const Error&) {
  }
  try {
    if (with_spec) {
      apply_rope(t, positions, spec, options);  // builds no table: cos/sin in the kernel
    } else {
      apply_rope(t, positions, table, options);
    }
    accepted = true;
  } catch (const Error& e) {
    if (std::strncmp(e.what(), "ropekit: ", 9) != 0) violated("Error message starts with 'ropekit: '");
    if (arena.bytes != before) violated("a rejected call left the buffer unchanged");
  }
  if (!std::equal(original_rows.begin(), original_rows.end(), original.rows().begin()))
    violated("apply_rope leaves the table unchanged");
  if (!accepted) return 0;
  if (must_reject) violated("a view whose byte extent overflows int64 is rejected");
  // Accepted: only the written views changed.
  std::vector<bool> writable(static_cast<size_t>(kBytes), false);
  mark(t.q_out ? *t.q_out : t.q, arena, writable);
  if (t.k) mark(t.k_out ? *t.k_out : *t.k, arena, writable);
  for (size_t i = 0; i < arena.bytes.size(); ++i)
    if (!writable[i] && arena.bytes[i] != before[i]) violated("an accepted call wrote only inside its output views");
  return 0;
}
