// The vectorized CPU backend against the float64 reference and against the scalar loop: every dtype,
// style, direction, layout, position mode, partial rotary, xPos, in/out of place, vector tails,
// threads, and every Highway target this CPU runs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "cpu_simd/simd.hpp"
#include "cpu_simd/thread_pool.hpp"
#include "half_float.hpp"
#include "reference64.hpp"
#include "ropekit/apply.hpp"
#include "ropekit/table.hpp"
#include "ropekit/frequencies.hpp"

namespace {

using namespace ropekit;
using ropekit::ref64::RefDirection;
using ropekit::ref64::RefRope;
using ropekit::ref64::RefStyle;

enum class Layout { bshd, bhsd, thd };

struct Case {
  DType dtype = DType::f32;
  Style style = Style::half;
  Direction direction = Direction::forward;
  int64_t head_dim = 128;
  int64_t rotary_dim = 0;  // 0: head_dim
  bool xpos = false;
  bool yarn = false;
  bool in_place = true;
  Layout layout = Layout::bshd;
  Positions::Kind positions = Positions::Kind::from_offset;
  bool compute_sincos = false;
  bool exact = false;
  int64_t batch = 2;
  int64_t seq = 5;
  int64_t q_heads = 3;
  int64_t k_heads = 2;  // 0: no k
  int threads = 1;
  int64_t max_id = 300;  // ids: positions drawn from [0, max_id]

  std::string describe() const {
    std::ostringstream o;
    o << "dtype=" << to_string(dtype) << " style=" << to_string(style) << " dir=" << static_cast<int>(direction)
      << " D=" << head_dim << " r=" << rotary_dim << " xpos=" << xpos << " yarn=" << yarn << " in_place=" << in_place
      << " layout=" << static_cast<int>(layout) << " pos=" << static_cast<int>(positions)
      << " sincos=" << compute_sincos << " exact=" << exact << " B=" << batch << " S=" << seq << " Hq=" << q_heads
      << " Hk=" << k_heads << " threads=" << threads << " target=" << detail::simd_target_name();
    return o.str();
  }
};

double tolerance(DType d) { return d == DType::f32 ? 1e-5 : d == DType::f16 ? 1e-3 : 8e-3; }

// A tensor in its storage dtype, with the logical (b, s, h) -> element offset of its view.
struct Tensor {
  DType dtype;
  std::vector<uint32_t> raw;  // storage (float bits or 16-bit values), as words
  TensorView view;

  Tensor(DType d, Layout layout, int64_t B, int64_t S, int64_t H, int64_t D) : dtype(d) {
    const int64_t n = B * S * H * D;
    raw.assign(static_cast<size_t>(n), 0);
    if (layout == Layout::bshd) view = TensorView::bshd(raw.data(), d, B, S, H, D);
    if (layout == Layout::bhsd) view = TensorView::bhsd(raw.data(), d, B, H, S, D);
    if (layout == Layout::thd) view = TensorView::thd(raw.data(), d, B * S, H, D);
  }
  Tensor(const Tensor& other) : dtype(other.dtype), raw(other.raw), view(other.view) { view.data = raw.data(); }
  Tensor& operator=(const Tensor&) = delete;

  int64_t offset(int64_t t_or_b, int64_t s, int64_t h) const {  // rank 3: (t, h); s ignored
    const auto& st = view.strides;
    return view.rank == 4 ? t_or_b * st[0] + s * st[1] + h * st[2] : t_or_b * st[0] + h * st[1];
  }
  double get(int64_t i) const {
    const auto* bytes = reinterpret_cast<const unsigned char*>(raw.data());
    if (dtype == DType::f32) {
      float f;
      std::memcpy(&f, bytes + 4 * i, 4);
      return f;
    }
    uint16_t h;
    std::memcpy(&h, bytes + 2 * i, 2);
    return dtype == DType::f16 ? detail::half_to_float(h) : detail::bf16_to_float(h);
  }
  void set(int64_t i, float v) {
    auto* bytes = reinterpret_cast<unsigned char*>(raw.data());
    if (dtype == DType::f32) {
      std::memcpy(bytes + 4 * i, &v, 4);
    } else {
      const uint16_t h = dtype == DType::f16 ? detail::float_to_half(v) : detail::float_to_bf16(v);
      std::memcpy(bytes + 2 * i, &h, 2);
    }
  }
  int64_t elements() const { return view.numel(); }
};

struct Outputs {
  std::vector<Tensor> outputs;  // q, k (written)
};

struct Scenario {
  Case c;
  RopeSpec spec;
  std::mt19937_64 rng;
  std::vector<int64_t> ids, offsets, cu;
  Positions positions;
  std::vector<int64_t> token_position;  // per token (b-major)
  Tensor q, k;

  static RopeSpec make_spec(const Case& c) {
    SpecParams sp;
    sp.head_dim = c.head_dim;
    sp.rotary_dim = c.rotary_dim == 0 ? c.head_dim : c.rotary_dim;
    sp.style = c.style;
    sp.base = 10000.0;
    if (c.yarn) sp.scaling = scaling::Yarn{4.0, 2048, 32.0, 1.0, 1.0, 1.0, {}, {}, {}, true};
    if (c.xpos) sp.xpos = Xpos{512.0, 0.4};
    return RopeSpec(sp);
  }

  Scenario(const Case& cs, uint64_t seed)
      : c(cs), spec(make_spec(cs)), rng(seed), q(cs.dtype, cs.layout, cs.batch, cs.seq, cs.q_heads, cs.head_dim),
        k(cs.dtype, cs.layout, cs.batch, cs.seq, std::max<int64_t>(cs.k_heads, 1), cs.head_dim) {
    std::uniform_real_distribution<float> value(-2.0f, 2.0f);
    for (Tensor* t : {&q, &k}) {
      for (int64_t i = 0; i < t->elements(); ++i) {
        float v = 0.0f;
        while (std::fabs(v) < 1e-3f) v = value(rng);  // never zero
        t->set(i, v);
      }
    }
    const int64_t B = c.batch, S = c.seq, T = B * S;
    std::uniform_int_distribution<int64_t> small(0, 100);
    token_position.assign(static_cast<size_t>(T), 0);
    switch (c.positions) {
      case Positions::Kind::from_offset: {
        const int64_t start = small(rng);
        positions = Positions::from_offset(start);
        for (int64_t t = 0; t < T; ++t) token_position[t] = start + t % S;
        break;
      }
      case Positions::Kind::per_sequence: {
        for (int64_t b = 0; b < B; ++b) offsets.push_back(small(rng));
        positions = Positions::per_sequence(IndexView(offsets.data(), B));
        for (int64_t t = 0; t < T; ++t) token_position[t] = offsets[t / S] + t % S;
        break;
      }
      case Positions::Kind::token_ids: {
        std::uniform_int_distribution<int64_t> id(0, c.max_id);
        for (int64_t t = 0; t < T; ++t) ids.push_back(id(rng));
        positions = Positions::token_ids(IndexView(ids.data(), T));
        token_position = ids;
        break;
      }
      case Positions::Kind::packed: {
        // Random boundaries (empty sequences allowed) with per-sequence offsets.
        const int64_t sequences = 1 + static_cast<int64_t>(rng() % 4);
        cu.push_back(0);
        for (int64_t i = 1; i < sequences; ++i) cu.push_back(static_cast<int64_t>(rng() % (T + 1)));
        cu.push_back(T);
        std::sort(cu.begin(), cu.end());
        for (int64_t i = 0; i < sequences; ++i) offsets.push_back(small(rng));
        positions = Positions::packed(IndexView(cu.data(), sequences + 1), IndexView(offsets.data(), sequences));
        for (int64_t i = 0; i < sequences; ++i)
          for (int64_t t = cu[i]; t < cu[i + 1]; ++t) token_position[t] = t - cu[i] + offsets[i];
        break;
      }
    }
  }

  // Runs the selected CPU kernel; returns the written q and k (inputs stay untouched out of place).
  Outputs run(detail::CpuKernel kernel) const {
    Outputs r{{q, k}};
    const float poison = std::numeric_limits<float>::quiet_NaN();
    RopeTensors tensors;
    Tensor qin = q, kin = k;
    if (c.in_place) {
      tensors.q = r.outputs[0].view;
      if (c.k_heads > 0) tensors.k = r.outputs[1].view;
    } else {
      for (auto& o : r.outputs)
        for (int64_t i = 0; i < o.elements(); ++i) o.set(i, poison);
      tensors.q = qin.view;
      tensors.q_out = r.outputs[0].view;
      if (c.k_heads > 0) {
        tensors.k = kin.view;
        tensors.k_out = r.outputs[1].view;
      }
    }
    RopeTable table(spec, 0, TableOptions{c.exact});
    if (!c.compute_sincos) table = table.for_seq_len(required_table_size(tensors, positions));
    ApplyOptions options;
    options.direction = c.direction;
    options.compute_sincos = c.compute_sincos;
    options.num_threads = c.threads;
    options.xpos_center = c.xpos ? 7.5 : 0.0;
    detail::set_cpu_kernel(kernel);
    apply_rope(tensors, positions, table, options);
    detail::set_cpu_kernel(detail::CpuKernel::simd);
    // Out of place, the inputs are read only.
    if (!c.in_place) {
      EXPECT_EQ(qin.raw, q.raw);
      EXPECT_EQ(kin.raw, k.raw);
    }
    return r;
  }

  RefRope reference() const {
    RefRope r;
    r.head_dim = spec.head_dim();
    r.rotary_dim = spec.rotary_dim();
    r.style = c.style == Style::half ? RefStyle::half : RefStyle::interleaved;
    RopeTable table(spec, 0, TableOptions{c.exact});
    r.inv_freq = table.inv_freq();
    r.attention = table.attention_factor();
    r.xpos = c.xpos;
    if (c.xpos) r.xpos_zeta = xpos_zeta(spec);
    r.xpos_scale_base = 512.0;
    r.xpos_center = c.xpos ? 7.5 : 0.0;
    r.float32_angles = !c.exact;
    return r;
  }
};

RefDirection ref_direction(Direction d) {
  return d == Direction::forward ? RefDirection::forward
                                 : d == Direction::backward ? RefDirection::backward : RefDirection::inverse;
}

// Every written row against the reference: rotated elements within tol * |pair|, pass-through
// elements bit-exact copies. Returns the number of failures (reported once with their first case).
int64_t check_against_reference(const Scenario& s, const Outputs& r, const char* what) {
  const Case& c = s.c;
  const RefRope ref = s.reference();
  const int64_t pairs = ref.rotary_dim / 2;
  const double tol = tolerance(c.dtype);
  int64_t failures = 0;
  std::string first;
  for (int op = 0; op < (c.k_heads > 0 ? 2 : 1); ++op) {
    const Tensor& in = op == 0 ? s.q : s.k;
    const Tensor& out = r.outputs[static_cast<size_t>(op)];
    const int64_t heads = op == 0 ? c.q_heads : c.k_heads;
    for (int64_t t = 0; t < c.batch * c.seq; ++t) {
      const int64_t b = c.layout == Layout::thd ? t : t / c.seq;
      const int64_t sq = c.layout == Layout::thd ? 0 : t % c.seq;
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t base_in = in.offset(b, sq, h);
        const int64_t base_out = out.offset(b, sq, h);
        std::vector<double> x(static_cast<size_t>(c.head_dim));
        for (int64_t d = 0; d < c.head_dim; ++d) x[d] = in.get(base_in + d);
        const auto y = ropekit::ref64::reference_row(ref, x, s.token_position[t], op == 0 ? 1.0 : -1.0,
                                                   ref_direction(c.direction));
        for (int64_t d = 0; d < c.head_dim; ++d) {
          const double got = out.get(base_out + d);
          bool ok;
          if (d >= ref.rotary_dim) {
            ok = got == x[d];
          } else {
            const int64_t i = c.style == Style::half ? d % pairs : d / 2;
            const int64_t ia = c.style == Style::half ? i : 2 * i;
            const int64_t ib = c.style == Style::half ? i + pairs : 2 * i + 1;
            const double norm = std::hypot(y[ia], y[ib]);
            ok = std::fabs(got - y[d]) <= tol * norm + 1e-30;
          }
          if (!ok) {
            if (failures++ == 0) {
              std::ostringstream o;
              o << what << ": op=" << op << " token=" << t << " head=" << h << " d=" << d << " got=" << got
                << " want=" << y[d];
              first = o.str();
            }
          }
        }
      }
    }
  }
  EXPECT_EQ(failures, 0) << first;
  return failures;
}

// SIMD and scalar outputs agree to the dtype's tolerance (and both match the reference).
void check_case(const Case& c) {
  const uint64_t seed = std::random_device{}();
  SCOPED_TRACE(c.describe() + " seed=" + std::to_string(seed));
  const Scenario s(c, seed);
  const Outputs fast = s.run(detail::CpuKernel::simd);
  check_against_reference(s, fast, "simd");
  const Outputs slow = s.run(detail::CpuKernel::scalar);
  check_against_reference(s, slow, "scalar");
  const double tol = tolerance(c.dtype);
  int64_t differ = 0;
  for (size_t op = 0; op < 2; ++op) {
    // Rows are head_dim apart in every layout's memory; compare within a row's magnitude.
    const Tensor& f = fast.outputs[op];
    const Tensor& g = slow.outputs[op];
    for (int64_t row = 0; row < f.elements(); row += c.head_dim) {
      double magnitude = 1.0;
      for (int64_t d = 0; d < c.head_dim; ++d) magnitude = std::max(magnitude, std::fabs(g.get(row + d)));
      for (int64_t d = 0; d < c.head_dim; ++d) {
        const double a = f.get(row + d), b = g.get(row + d);
        if (!(std::fabs(a - b) <= 2 * tol * magnitude) && !(std::isnan(a) && std::isnan(b))) ++differ;
      }
    }
  }
  EXPECT_EQ(differ, 0) << "simd and scalar outputs differ";
}

// Pins each Highway target this machine supports, best first, and runs `body` under it.
template <class Body>
void for_each_target(Body body) {
  const auto targets = detail::simd_targets();
  ASSERT_FALSE(targets.empty());
  for (int64_t target : targets) {
    detail::simd_pin_target(target);
    body();
  }
  detail::simd_pin_target(0);
}

constexpr DType kDTypes[] = {DType::f32, DType::f16, DType::bf16};
constexpr Style kStyles[] = {Style::half, Style::interleaved};
constexpr Direction kDirections[] = {Direction::forward, Direction::backward, Direction::inverse};

// Run on its own (ctest runs each test in its own process; the ROPEKIT_CPU=scalar copy is added in
// CMakeLists.txt): the default kernel follows the environment.
TEST(CpuSimd, DefaultKernelFollowsEnvironment) {
  const char* env = std::getenv("ROPEKIT_CPU");
  const bool scalar = env != nullptr && std::string(env) == "scalar";
  EXPECT_EQ(detail::cpu_kernel(), scalar ? detail::CpuKernel::scalar : detail::CpuKernel::simd);
}

TEST(CpuSimd, RunsABestTargetAndTheScalarSwitchWorks) {
  EXPECT_FALSE(detail::simd_target_name().empty());
  detail::set_cpu_kernel(detail::CpuKernel::scalar);
  EXPECT_EQ(detail::cpu_kernel(), detail::CpuKernel::scalar);
  detail::set_cpu_kernel(detail::CpuKernel::simd);
  EXPECT_EQ(detail::cpu_kernel(), detail::CpuKernel::simd);
}

// dtype x style x direction x head sizes with vector tails x partial rotary, on every target.
TEST(CpuSimd, DtypesStylesDirectionsHeadSizesOnEveryTarget) {
  for_each_target([] {
    for (DType dtype : kDTypes)
      for (Style style : kStyles)
        for (Direction dir : kDirections)
          for (auto [head_dim, rotary] : {std::pair<int64_t, int64_t>{64, 0}, {80, 0}, {96, 64}, {128, 0},
                                          {128, 40}, {256, 0}, {36, 18}}) {
            Case c;
            c.dtype = dtype;
            c.style = style;
            c.direction = dir;
            c.head_dim = head_dim;
            c.rotary_dim = rotary;
            c.in_place = (head_dim / 16) % 2 == 0;
            c.batch = 1;
            c.seq = 3;
            check_case(c);
          }
  });
}

// Options and layouts on the best target: xPos, YaRN, in/out of place, all position modes and
// layouts, computed sincos (float and exact angles), GQA and q only.
TEST(CpuSimd, OptionsLayoutsAndPositionModes) {
  for (DType dtype : kDTypes)
    for (Style style : kStyles)
      for (Layout layout : {Layout::bshd, Layout::bhsd, Layout::thd})
        for (Positions::Kind kind : {Positions::Kind::from_offset, Positions::Kind::per_sequence, Positions::Kind::token_ids,
                                     Positions::Kind::packed}) {
          if (kind == Positions::Kind::packed && layout != Layout::thd) continue;
          if (kind == Positions::Kind::per_sequence && layout == Layout::thd) continue;
          for (int variant = 0; variant < 4; ++variant) {
            Case c;
            c.dtype = dtype;
            c.style = style;
            c.layout = layout;
            c.positions = kind;
            c.head_dim = variant % 2 == 0 ? 80 : 64;
            c.rotary_dim = variant == 3 ? 48 : 0;
            c.xpos = variant == 1 || variant == 3;
            c.yarn = variant == 2;
            c.in_place = variant % 2 == 0;
            c.compute_sincos = variant >= 2;
            c.exact = variant == 3;
            c.direction = kDirections[variant % 3];
            c.k_heads = variant == 2 ? 0 : 2;
            c.batch = layout == Layout::thd ? 1 : 2;
            c.seq = layout == Layout::thd ? 11 : 5;
            check_case(c);
          }
        }
}

// Threads over tokens (4097 tokens) and over heads (1 and 3 tokens), 1, 2 and many threads; the
// per-thread traffic floor is lowered so small calls split too.
TEST(CpuSimd, ThreadsOverTokensAndHeads) {
  detail::set_cpu_min_bytes_per_thread(1);
  for (int threads : {1, 2, 7}) {
    for (auto [batch, seq] : {std::pair<int64_t, int64_t>{1, 1}, {3, 1}, {1, 4097}}) {
      for (DType dtype : {DType::f32, DType::bf16}) {
        Case c;
        c.dtype = dtype;
        c.style = seq > 1 ? Style::half : Style::interleaved;
        c.threads = threads;
        c.batch = batch;
        c.seq = seq;
        c.q_heads = 4;
        c.k_heads = 2;
        c.head_dim = seq > 1 ? 64 : 128;
        c.xpos = threads == 2;
        c.in_place = threads != 7;
        check_case(c);
      }
    }
    Case packed;  // packed sequences split across threads
    packed.layout = Layout::thd;
    packed.positions = Positions::Kind::packed;
    packed.batch = 1;
    packed.seq = 301;
    packed.threads = threads;
    packed.dtype = DType::f16;
    check_case(packed);
  }
  detail::set_cpu_min_bytes_per_thread(int64_t{1} << 20);
}

// The vector sincos against double std::cos / std::sin up to |x| = 1e7, near multiples of pi/2,
// and past the reduction's range (library fallback), on every target.
TEST(CpuSimd, VectorSinCosIsFloatAccurateToTenMillion) {
  std::mt19937_64 rng(std::random_device{}());
  std::vector<double> angles;
  for (double limit : {1.0, 100.0, 1e4, 1e6, 1e7}) {
    std::uniform_real_distribution<double> u(-limit, limit);
    for (int i = 0; i < 2000; ++i) angles.push_back(u(rng));
  }
  for (int64_t k = 1; k < 6000000; k = k * 3 + 1) {  // just around k * pi/2, where reduction cancels
    const double x = static_cast<double>(k) * 1.5707963267948966;
    angles.push_back(std::nextafter(x, 0.0));
    angles.push_back(x);
  }
  for (double big : {2e7, 1e8, 1e9}) angles.push_back(big);
  angles.push_back(0.0);
  for (int i = 0; i < 1000; ++i) angles.push_back(static_cast<double>(static_cast<float>(1e6 + i * 7919.0) * 0.9f));
  for_each_target([&] {
    SCOPED_TRACE(detail::simd_target_name());
    for (double scale : {1.0, 1.1386294361}) {
      std::vector<float> c(angles.size()), s(angles.size());
      detail::simd_sincos(angles.data(), static_cast<int64_t>(angles.size()), scale, c.data(), s.data());
      int64_t bad = 0;
      double worst = 0;
      for (size_t i = 0; i < angles.size(); ++i) {
        const double wc = std::cos(angles[i]) * scale, ws = std::sin(angles[i]) * scale;
        // One float rounding of a value of magnitude <= scale: half an ulp of scale, plus a hair.
        const double bound = 0.6 * std::ldexp(1.0, -23) * scale;
        const double err = std::max(std::fabs(c[i] - wc), std::fabs(s[i] - ws));
        worst = std::max(worst, err);
        if (!(err <= bound)) ++bad;
      }
      EXPECT_EQ(bad, 0) << "worst error " << worst;
    }
  });
}

// In-kernel sincos at long positions (ids up to 1e7) against the float64 reference, both angle modes.
TEST(CpuSimd, InKernelSinCosAtLongPositions) {
  for (bool exact : {false, true})
    for (Style style : kStyles)
      for (int64_t max_id : {int64_t{1000000}, int64_t{10000000}}) {
        Case c;
        c.positions = Positions::Kind::token_ids;
        c.compute_sincos = true;
        c.exact = exact;
        c.style = style;
        c.max_id = max_id;
        c.batch = 2;
        c.seq = 16;
        check_case(c);
      }
}

}  // namespace

namespace {

// A NaN in the input stays NaN in its rotated pair (never turns into a number), on every target.
TEST(CpuSimd, NanInputsStayNan) {
  for_each_target([] {
    for (DType dtype : kDTypes)
      for (Style style : kStyles) {
        SCOPED_TRACE(to_string(dtype) + " " + to_string(style) + " " + detail::simd_target_name());
        Case c;
        c.dtype = dtype;
        c.style = style;
        c.head_dim = 80;
        c.batch = 1;
        c.seq = 2;
        c.k_heads = 0;
        Scenario s(c, 7);
        const int64_t nan_at = 78;  // in the vector tail for both styles
        s.q.set(nan_at, std::numeric_limits<float>::quiet_NaN());
        const Outputs r = s.run(detail::CpuKernel::simd);
        const int64_t partner = style == Style::half ? nan_at - 40 : nan_at + 1;
        EXPECT_TRUE(std::isnan(r.outputs[0].get(nan_at)));
        EXPECT_TRUE(std::isnan(r.outputs[0].get(partner)));
        int64_t nans = 0;
        for (int64_t i = 0; i < r.outputs[0].elements(); ++i) nans += std::isnan(r.outputs[0].get(i)) ? 1 : 0;
        EXPECT_EQ(nans, 2);
      }
  });
}

}  // namespace
