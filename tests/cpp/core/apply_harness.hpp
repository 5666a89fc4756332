#pragma once
// One apply_rope case end to end: random inputs in the storage type, NaN-poisoned outputs, the call,
// then every element compared with the float64 reference (tests/cpp/reference) fed the stored inputs
// and frequencies from the test's own formulas (hf_formulas.hpp).
#include <algorithm>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "hf_formulas.hpp"
#include "reference64.hpp"
#include "test_support.hpp"

namespace rt {

using ropekit::Direction;
using ropekit::Style;
using ropekit::TensorView;

enum class Layout { bshd, bhsd, thd };
enum class PosMode { offset, per_sequence, ids32, ids64, packed, packed_offsets };

inline const char* name(Layout l) { return l == Layout::bshd ? "bshd" : l == Layout::bhsd ? "bhsd" : "thd"; }
inline const char* name(PosMode m) {
  switch (m) {
    case PosMode::offset: return "from_offset";
    case PosMode::per_sequence: return "per_sequence";
    case PosMode::ids32: return "ids_i32";
    case PosMode::ids64: return "ids_i64";
    case PosMode::packed: return "packed";
    case PosMode::packed_offsets: return "packed_offsets";
  }
  return "?";
}
inline const char* name(Direction d) {
  return d == Direction::forward ? "forward" : d == Direction::backward ? "backward" : "inverse";
}

struct Case {
  DType dtype = DType::f32;
  Style style = Style::half;
  Layout layout = Layout::bshd;
  Layout out_layout = Layout::bshd;  // out of place: the outputs' layout (same rank as layout)
  PosMode pos = PosMode::offset;
  bool in_place = true;
  Direction direction = Direction::forward;
  std::optional<ropekit::Xpos> xpos;
  double xpos_center = 0.0;
  ropekit::Scaling scaling = ropekit::scaling::None{};
  double base = 10000.0;
  bool compute_sincos = false;
  bool exact = false;
  bool spec_overload = false;  // apply_rope(spec) instead of a prebuilt table
  int num_threads = 0;
  int64_t batch = 2;           // ignored for thd (1)
  int64_t seq = 4;             // tokens per sequence (thd: total tokens)
  int64_t q_heads = 2;
  int64_t k_heads = 2;         // 0: no k
  int64_t head_dim = 16;
  int64_t rotary_dim = 16;
  int64_t max_position = 40;   // ids / offsets drawn below this

  std::string describe() const {
    std::ostringstream o;
    o << ropekit::to_string(dtype) << ' ' << ropekit::to_string(style) << ' ' << name(layout) << "->"
      << name(out_layout) << ' ' << name(pos) << (in_place ? " in_place " : " out_of_place ") << name(direction)
      << (xpos ? " xpos" : "") << " center=" << xpos_center << " scaling_index=" << scaling.index()
      << " base=" << base << (compute_sincos ? " compute_sincos" : "") << (exact ? " exact" : "")
      << (spec_overload ? " spec_overload" : "") << " B=" << batch << " S=" << seq << " Hq=" << q_heads
      << " Hk=" << k_heads << " D=" << head_dim << " R=" << rotary_dim << " threads=" << num_threads;
    return o.str();
  }
};

// Position arrays (kept alive for the call) and the position of every token, b-major.
struct PositionData {
  std::vector<int64_t> values64, cu64;
  std::vector<int32_t> values32, cu32;
  ropekit::Positions positions;
  std::vector<int64_t> token_position;
};

inline PositionData make_positions(PosMode mode, int64_t batch, int64_t seq, int64_t max_position, Rng& rng) {
  PositionData pd;
  const int64_t tokens = batch * seq;
  pd.token_position.resize(static_cast<size_t>(tokens));
  const bool use32 = rng.coin();
  auto index_view = [&](bool as32, const std::vector<int64_t>& v64, const std::vector<int32_t>& v32) {
    return as32 ? ropekit::IndexView(v32.data(), static_cast<int64_t>(v32.size()))
                : ropekit::IndexView(v64.data(), static_cast<int64_t>(v64.size()));
  };
  auto fill = [&](int64_t n, int64_t lo, int64_t hi) {
    for (int64_t i = 0; i < n; ++i) {
      const int64_t v = rng.integer(lo, hi);
      pd.values64.push_back(v);
      pd.values32.push_back(static_cast<int32_t>(v));
    }
  };
  switch (mode) {
    case PosMode::offset: {
      const int64_t start = rng.integer(0, 7);
      pd.positions = ropekit::Positions::from_offset(start);
      for (int64_t t = 0; t < tokens; ++t) pd.token_position[static_cast<size_t>(t)] = start + t % seq;
      break;
    }
    case PosMode::per_sequence:
      fill(batch, 0, max_position);
      pd.positions = ropekit::Positions::per_sequence(index_view(use32, pd.values64, pd.values32));
      for (int64_t t = 0; t < tokens; ++t)
        pd.token_position[static_cast<size_t>(t)] = pd.values64[static_cast<size_t>(t / seq)] + t % seq;
      break;
    case PosMode::ids32:
    case PosMode::ids64:
      fill(tokens, 0, max_position);
      pd.positions = ropekit::Positions::token_ids(index_view(mode == PosMode::ids32, pd.values64, pd.values32));
      pd.token_position = pd.values64;
      break;
    case PosMode::packed:
    case PosMode::packed_offsets: {
      // Rank 3 only: batch == 1, seq == total tokens. Sequences may be empty.
      const int64_t sequences = rng.integer(1, 4);
      std::vector<int64_t> cuts{0, seq};
      for (int64_t i = 1; i < sequences; ++i) cuts.push_back(rng.integer(0, seq));
      std::sort(cuts.begin(), cuts.end());
      pd.cu64 = cuts;
      for (int64_t v : cuts) pd.cu32.push_back(static_cast<int32_t>(v));
      const bool with_offsets = mode == PosMode::packed_offsets;
      if (with_offsets) fill(sequences, 0, max_position);
      const bool offsets32 = rng.coin();
      pd.positions = ropekit::Positions::packed(
          index_view(use32, pd.cu64, pd.cu32),
          with_offsets ? index_view(offsets32, pd.values64, pd.values32) : ropekit::IndexView{});
      for (int64_t b = 0; b < sequences; ++b) {
        const int64_t offset = with_offsets ? pd.values64[static_cast<size_t>(b)] : 0;
        for (int64_t t = cuts[static_cast<size_t>(b)]; t < cuts[static_cast<size_t>(b) + 1]; ++t)
          pd.token_position[static_cast<size_t>(t)] = t - cuts[static_cast<size_t>(b)] + offset;
      }
      break;
    }
  }
  return pd;
}

inline TensorView make_view(Layout layout, void* data, DType dtype, int64_t batch, int64_t seq, int64_t heads,
                            int64_t dim) {
  switch (layout) {
    case Layout::bshd: return TensorView::bshd(data, dtype, batch, seq, heads, dim);
    case Layout::bhsd: return TensorView::bhsd(data, dtype, batch, heads, seq, dim);
    case Layout::thd: return TensorView::thd(data, dtype, seq, heads, dim);
  }
  return {};
}

// One of q / k: the buffer read, a pristine copy, and the buffer written.
struct Operand {
  Buffer in;
  Buffer original;
  std::optional<Buffer> out;
  TensorView in_view{};
  TensorView out_view{};
  int64_t heads = 0;

  Operand(const Case& c, int64_t heads_, Rng& rng)
      : in(c.dtype, (c.layout == Layout::thd ? 1 : c.batch) * c.seq * heads_ * c.head_dim),
        original(c.dtype, 0),
        heads(heads_) {
    const int64_t batch = c.layout == Layout::thd ? 1 : c.batch;
    in.fill_random(rng);
    original = in;
    in_view = make_view(c.layout, in.data(), c.dtype, batch, c.seq, heads, c.head_dim);
    if (!c.in_place) {
      out.emplace(c.dtype, in.size());
      out->poison();
      out_view = make_view(c.out_layout, out->data(), c.dtype, batch, c.seq, heads, c.head_dim);
    }
  }
  const Buffer& written() const { return out ? *out : in; }
  const TensorView& written_view() const { return out ? out_view : in_view; }
};

struct Errors {
  double diff2 = 0, ref2 = 0, max_diff = 0, max_ref = 0;
  int64_t non_finite = 0, pass_through_changed = 0, compared = 0;
  void add(double got, double want) {
    ++compared;
    if (!std::isfinite(got)) ++non_finite;
    diff2 += (got - want) * (got - want);
    ref2 += want * want;
    max_diff = std::max(max_diff, std::fabs(got - want));
    max_ref = std::max(max_ref, std::fabs(want));
  }
  double relative() const { return std::sqrt(diff2 / ref2); }
};

inline ropekit::ref64::RefRope reference_for(const ropekit::RopeSpec& spec, const Case& c, int64_t seq_len) {
  ropekit::ref64::RefRope r;
  r.head_dim = spec.head_dim();
  r.rotary_dim = spec.rotary_dim();
  r.style = spec.style() == Style::half ? ropekit::ref64::RefStyle::half : ropekit::ref64::RefStyle::interleaved;
  r.inv_freq = hf::inv_freq(spec, seq_len);
  r.attention = hf::attention(spec);
  if (spec.xpos()) {
    r.xpos = true;
    r.xpos_zeta = hf::xpos_zeta(spec.rotary_dim(), spec.xpos()->gamma);
    r.xpos_scale_base = spec.xpos()->scale_base;
    r.xpos_center = c.xpos_center;
  }
  r.float32_angles = !c.exact;
  return r;
}

inline ropekit::ref64::RefDirection ref_direction(Direction d) {
  return d == Direction::forward    ? ropekit::ref64::RefDirection::forward
         : d == Direction::backward ? ropekit::ref64::RefDirection::backward
                                    : ropekit::ref64::RefDirection::inverse;
}

inline void compare_operand(const Case& c, const ropekit::ref64::RefRope& r, const Operand& op,
                            const std::vector<int64_t>& token_position, double sign, Errors& e) {
  const int64_t batch = c.layout == Layout::thd ? 1 : c.batch;
  std::vector<double> x(static_cast<size_t>(c.head_dim));
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t s = 0; s < c.seq; ++s) {
      const int64_t position = token_position[static_cast<size_t>(b * c.seq + s)];
      for (int64_t h = 0; h < op.heads; ++h) {
        for (int64_t d = 0; d < c.head_dim; ++d)
          x[static_cast<size_t>(d)] = op.original.get(offset_of(op.in_view, b, s, h, d));
        const auto y = ropekit::ref64::reference_row(r, x, position, sign, ref_direction(c.direction));
        for (int64_t d = 0; d < c.head_dim; ++d) {
          const double got = op.written().get(offset_of(op.written_view(), b, s, h, d));
          if (d < c.rotary_dim) {
            e.add(got, y[static_cast<size_t>(d)]);
          } else if (!(got == x[static_cast<size_t>(d)])) {
            ++e.pass_through_changed;  // copied out of place, untouched in place
          }
        }
      }
    }
  }
}

// Runs one case; failures are reported with the case and the caller's seed in scope.
inline void run_case(const Case& c, Rng& rng) {
  SCOPED_TRACE(c.describe());
  ropekit::SpecParams sp;
  sp.head_dim = c.head_dim;
  sp.rotary_dim = c.rotary_dim;
  sp.base = c.base;
  sp.style = c.style;
  sp.scaling = c.scaling;
  sp.xpos = c.xpos;
  const ropekit::RopeSpec spec(sp);
  const int64_t batch = c.layout == Layout::thd ? 1 : c.batch;
  const PositionData pd = make_positions(c.pos, batch, c.seq, c.max_position, rng);
  const int64_t needed =
      pd.token_position.empty() ? 0 : *std::max_element(pd.token_position.begin(), pd.token_position.end()) + 1;

  Operand q(c, c.q_heads, rng);
  std::optional<Operand> k;
  if (c.k_heads > 0) k.emplace(c, c.k_heads, rng);
  ropekit::RopeTensors t{q.in_view, std::nullopt, std::nullopt, std::nullopt};
  if (k) t.k = k->in_view;
  if (!c.in_place) {
    t.q_out = q.out_view;
    if (k) t.k_out = k->out_view;
  }
  ropekit::ApplyOptions options;
  options.direction = c.direction;
  options.compute_sincos = c.compute_sincos;
  options.xpos_center = c.xpos_center;
  options.num_threads = c.num_threads;
  int64_t seq_len = 0;  // what the length-dependent schemes were prepared for
  if (c.spec_overload) {
    ASSERT_NO_THROW(ropekit::apply_rope(t, pd.positions, spec, options));
    seq_len = needed;
  } else {
    ropekit::RopeTable table(spec, c.compute_sincos ? 0 : needed, ropekit::TableOptions{c.exact});
    ASSERT_NO_THROW(ropekit::apply_rope(t, pd.positions, table, options));
    seq_len = table.seq_len();
  }

  const auto r = reference_for(spec, c, seq_len);
  const double tol = tolerance(c.dtype);
  auto check = [&](const Operand& op, double sign, const char* what) {
    SCOPED_TRACE(what);
    Errors e;
    compare_operand(c, r, op, pd.token_position, sign, e);
    EXPECT_EQ(e.non_finite, 0) << "NaN/inf in the output: unwritten or broken elements";
    EXPECT_EQ(e.pass_through_changed, 0) << "pass-through dims changed";
    if (e.compared > 0) {
      EXPECT_LE(e.relative(), tol) << "norm-wise relative error";
      EXPECT_LE(e.max_diff, tol * e.max_ref) << "largest elementwise error vs largest reference magnitude";
    }
    if (op.out) {
      EXPECT_TRUE(op.in.bytes() == op.original.bytes()) << "input changed by an out-of-place call";
    }
  };
  check(q, +1.0, "q");
  if (k) check(*k, -1.0, "k");
}

}  // namespace rt
