#include "case_table.hpp"

#include <algorithm>
#include <cstdlib>
#include <random>
#include <set>
#include <sstream>
#include <tuple>

namespace ropekit::cases {

const char* name(Layout l) {
  switch (l) {
    case Layout::bshd: return "bshd";
    case Layout::bhsd: return "bhsd";
    case Layout::padded: return "padded";
    case Layout::thd: return "thd";
  }
  return "?";
}
const char* name(PositionMode m) {
  switch (m) {
    case PositionMode::offset: return "offset";
    case PositionMode::per_sequence: return "per_sequence";
    case PositionMode::ids32: return "ids32";
    case PositionMode::ids64: return "ids64";
    case PositionMode::packed: return "packed";
    case PositionMode::packed_offsets: return "packed_offsets";
  }
  return "?";
}
const char* name(CosSin c) {
  switch (c) {
    case CosSin::rows: return "rows";
    case CosSin::past_rows: return "past_rows";
    case CosSin::compute: return "compute_sincos";
    case CosSin::compute_exact: return "compute_sincos_exact";
  }
  return "?";
}
const char* name(ScalingFamily f) {
  constexpr const char* names[] = {"none", "linear", "ntk_aware", "dynamic_ntk", "yarn",
                                   "llama3", "longrope", "truncated", "proportional", "fixed"};
  return names[static_cast<int>(f)];
}
const char* name(AxisMap m) {
  constexpr const char* names[] = {"", "mrope", "mrope_interleaved", "axial", "axial_odd"};
  return names[static_cast<int>(m)];
}
const char* name(Direction d) {
  return d == Direction::forward ? "forward" : d == Direction::backward ? "backward" : "inverse";
}

std::string Case::describe() const {
  std::ostringstream o;
  o << to_string(dtype) << ' ' << to_string(style) << ' ' << name(layout) << "->" << name(out_layout) << ' '
    << name(positions) << ' ' << name(family) << (xpos ? " xpos" : "") << ' ' << name(direction)
    << (in_place ? " in_place" : " out_of_place") << (partial_rotary ? " partial" : "") << ' ' << name(cos_sin)
    << (exact_rows ? " exact" : "") << (xpos_center_shift != 0.0 ? " xpos_center_shift=" + std::to_string(xpos_center_shift) : "")
    << (far_positions ? " far(" + std::to_string(far_start) + ")" : "") << (query_scale ? " query_scale(" + query_scale->describe() + ")" : "") << " B=" << batch << " S=" << seq << " Hq=" << q_heads << " Hk=" << k_heads
    << " D=" << spec.head_dim << " R=" << spec.rotary_dim << " threads=" << num_threads;
  if (spec.mrope)
    o << " mrope(" << spec.mrope->sections[0] << ',' << spec.mrope->sections[1] << ',' << spec.mrope->sections[2]
      << (spec.mrope->interleaved ? " interleaved" : "") << ')';
  if (spec.axial) o << (spec.axial->odd_second_half ? " axial_odd" : " axial");
  if (row_padding >= 0) o << " row_padding=" << row_padding;
  o << " seed=" << seed;
  return o.str();
}

uint64_t test_seed() {
  if (const char* s = std::getenv("ROPEKIT_TEST_SEED")) return std::strtoull(s, nullptr, 10);
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) ^ device();
}

std::string replay_note(uint64_t seed) {
  return "seed " + std::to_string(seed) + " (replay: ROPEKIT_TEST_SEED=" + std::to_string(seed) + ")";
}

namespace {

// The dimensions of a case, each a small index range.
enum Dim { kDtype, kStyle, kLayout, kOutLayout, kPositions, kFamily, kXpos, kDirection, kInPlace, kPartial,
           kCosSin, kFar, kQueryScale, kThreads, kAxisMap, kDims };
using Point = std::array<int, kDims>;

constexpr DType kDtypes[] = {DType::f32, DType::f16, DType::bf16, DType::f64};

Case to_case(const Point& x, bool fixed_spec, const SpecParams& given) {
  Case c;
  c.dtype = kDtypes[x[kDtype]];
  c.style = static_cast<Style>(x[kStyle]);
  c.layout = static_cast<Layout>(x[kLayout]);
  c.out_layout = static_cast<Layout>(x[kOutLayout]);
  c.positions = static_cast<PositionMode>(x[kPositions]);
  c.family = fixed_spec ? ScalingFamily::fixed : static_cast<ScalingFamily>(x[kFamily]);
  c.xpos = fixed_spec ? given.xpos.has_value() : x[kXpos] == 1;
  c.direction = static_cast<Direction>(x[kDirection]);
  c.in_place = x[kInPlace] == 1;
  c.partial_rotary = fixed_spec ? given.rotary_dim != 0 && given.rotary_dim < given.head_dim : x[kPartial] == 1;
  c.cos_sin = static_cast<CosSin>(x[kCosSin]);
  c.far_positions = x[kFar] == 1;
  if (x[kQueryScale] == 1) c.query_scale = QueryScale{};  // drawn by complete()
  constexpr int threads[] = {1, 3, 0};
  c.num_threads = threads[x[kThreads]];
  if (!fixed_spec) c.axis_map = static_cast<AxisMap>(x[kAxisMap]);
  else if (given.mrope) c.axis_map = given.mrope->interleaved ? AxisMap::mrope_interleaved : AxisMap::mrope_chunked;
  else if (given.axial) c.axis_map = given.axial->odd_second_half ? AxisMap::axial_odd : AxisMap::axial;
  const bool ids = c.positions == PositionMode::ids32 || c.positions == PositionMode::ids64;
  if (c.axis_map != AxisMap::none && ids) c.query_scale.reset();  // one position a token (a given spec's cases)
  return c;
}

// Constraints between dimensions; 0 when the point is a valid case.
int violations(const Point& x) {
  const auto layout = static_cast<Layout>(x[kLayout]);
  const auto out = static_cast<Layout>(x[kOutLayout]);
  const auto pos = static_cast<PositionMode>(x[kPositions]);
  const bool packed = pos == PositionMode::packed || pos == PositionMode::packed_offsets;
  int v = 0;
  v += packed && layout != Layout::thd;                      // cu_seqlens split rank-3 views
  v += pos == PositionMode::per_sequence && layout == Layout::thd;
  v += (layout == Layout::thd) != (out == Layout::thd);     // outputs have the inputs' rank
  v += x[kInPlace] == 1 && out != layout;                   // in place: the output is the input
  v += x[kFar] == 1 && x[kXpos] == 1;                       // xPos scales overflow far from the center
  v += x[kFar] == 1 && static_cast<CosSin>(x[kCosSin]) == CosSin::rows;  // no 10^6-row tables
  const bool ids = pos == PositionMode::ids32 || pos == PositionMode::ids64;
  const auto map = static_cast<AxisMap>(x[kAxisMap]);
  const bool axial = map == AxisMap::axial || map == AxisMap::axial_odd;
  v += map != AxisMap::none && x[kXpos] == 1;               // no model combines them (RopeSpec refuses)
  v += map != AxisMap::none && ids && x[kQueryScale] == 1;  // a query scale needs one position a token
  v += axial && static_cast<ScalingFamily>(x[kFamily]) != ScalingFamily::none;  // vision towers: no scaling
  return v;
}

struct Pair {
  int i, vi, j, vj;
  auto operator<=>(const Pair&) const = default;
};

class CoveringBuilder {
 public:
  CoveringBuilder(std::array<int, kDims> sizes, uint64_t seed) : sizes_(sizes), rng_(seed) {}

  // Adds cases until every coverable pair among points with dtype below `dtypes` is covered.
  void cover(int dtypes) {
    sizes_[kDtype] = dtypes;
    std::set<Pair> uncovered;
    for (int i = 0; i < kDims; ++i)
      for (int j = i + 1; j < kDims; ++j)
        for (int vi = 0; vi < sizes_[i]; ++vi)
          for (int vj = 0; vj < sizes_[j]; ++vj) {
            const Pair p{i, vi, j, vj};
            Point x{};
            if (!covered(p) && complete_with(p, x)) uncovered.insert(p);
          }
    while (!uncovered.empty()) {
      Point best{};
      int best_gain = 0;
      for (int attempt = 0; attempt < 8; ++attempt) {
        auto it = uncovered.begin();
        std::advance(it, static_cast<long>(rng_() % uncovered.size()));
        Point x{};
        if (!complete_with(*it, x)) continue;
        improve(x, *it, uncovered);
        const int gain = count(x, uncovered);
        if (gain > best_gain) best_gain = gain, best = x;
      }
      if (best_gain == 0) break;
      for (const Pair& p : pairs_of(best)) uncovered.erase(p), covered_.insert(p);
      points_.push_back(best);
    }
  }
  const std::vector<Point>& points() const { return points_; }

 private:
  bool covered(const Pair& p) const { return covered_.count(p) > 0; }

  static std::vector<Pair> pairs_of(const Point& x) {
    std::vector<Pair> out;
    for (int i = 0; i < kDims; ++i)
      for (int j = i + 1; j < kDims; ++j) out.push_back({i, x[i], j, x[j]});
    return out;
  }
  static int count(const Point& x, const std::set<Pair>& uncovered) {
    int n = 0;
    for (const Pair& p : pairs_of(x)) n += uncovered.count(p) > 0;
    return n;
  }

  // A random valid point holding the pair, repaired one free dimension at a time.
  bool complete_with(const Pair& p, Point& x) {
    for (int d = 0; d < kDims; ++d) x[d] = static_cast<int>(rng_() % static_cast<uint64_t>(sizes_[d]));
    x[p.i] = p.vi;
    x[p.j] = p.vj;
    for (int pass = 0; pass < 3 && violations(x) > 0; ++pass)
      for (int d = 0; d < kDims; ++d) {
        if (d == p.i || d == p.j) continue;
        Point y = x;
        for (int v = 0; v < sizes_[d]; ++v) {
          y[d] = v;
          if (violations(y) < violations(x)) x = y;
        }
      }
    return violations(x) == 0;
  }

  // Changes free dimensions while that covers more uncovered pairs and keeps the point valid.
  void improve(Point& x, const Pair& p, const std::set<Pair>& uncovered) {
    for (int d = 0; d < kDims; ++d) {
      if (d == p.i || d == p.j) continue;
      Point y = x;
      for (int v = 0; v < sizes_[d]; ++v) {
        y[d] = v;
        if (violations(y) == 0 && count(y, uncovered) > count(x, uncovered)) x = y;
      }
    }
  }

  std::array<int, kDims> sizes_;
  std::mt19937_64 rng_;
  std::set<Pair> covered_;
  std::vector<Point> points_;
};

int64_t draw(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

Scaling scaling_of(ScalingFamily f, int64_t pairs, std::mt19937_64& rng) {
  namespace sc = ropekit::scaling;
  switch (f) {
    case ScalingFamily::none:
    case ScalingFamily::fixed: return sc::None{};
    case ScalingFamily::linear: return sc::Linear{2.0};
    case ScalingFamily::ntk_aware: return sc::NtkAware{3.0};
    case ScalingFamily::dynamic_ntk: return sc::DynamicNtk{2.0, 16};  // the tables' lengths pass 16
    case ScalingFamily::yarn: {
      sc::Yarn y;
      y.factor = 4.0;
      y.original_max = 32;
      y.extrapolation_factor = draw(rng, 0, 1) ? 1.0 : 0.5;
      return y;
    }
    case ScalingFamily::llama3: return sc::Llama3{8.0, 1.0, 4.0, 64};
    case ScalingFamily::longrope: {
      sc::LongRope l;
      for (int64_t i = 0; i < pairs; ++i) {
        l.short_factor.push_back(1.0 + static_cast<double>(draw(rng, 0, 8)) / 8.0);
        l.long_factor.push_back(1.0 + static_cast<double>(draw(rng, 0, 24)) / 8.0);
      }
      l.original_max = 32;
      l.factor = 4.0;
      return l;
    }
    case ScalingFamily::truncated: return sc::Truncated::from_length(64.0);
    case ScalingFamily::proportional: return sc::Proportional{draw(rng, 0, 1) ? 0.25 : 0.5, draw(rng, 0, 1) ? 1.0 : 2.0};
  }
  return sc::None{};
}

}  // namespace

Case complete(Case c, uint64_t seed, const SpecParams& given, int64_t tokens) {
  std::mt19937_64 rng(seed);
  c.seed = seed;
  if (given.head_dim > 0) {
    c.spec = given;
    if (c.spec.rotary_dim == 0) c.spec.rotary_dim = c.spec.head_dim;
  } else {
    c.spec = SpecParams{};
    constexpr int64_t head_dims[] = {4, 8, 12, 16, 36, 64, 80, 128};
    c.spec.head_dim = head_dims[draw(rng, 0, 7)];
    // From one pair (the NTK exponent d / (d - 2) needs two).
    const int64_t fewest = c.family == ScalingFamily::ntk_aware || c.family == ScalingFamily::dynamic_ntk ? 2 : 1;
    const bool axial = c.axis_map == AxisMap::axial || c.axis_map == AxisMap::axial_odd;
    if (axial)  // two halves of pairs: rotary_dim a multiple of 4 (head sizes are)
      c.spec.rotary_dim = c.partial_rotary && c.spec.head_dim / 4 - 1 >= 1 ? 4 * draw(rng, 1, c.spec.head_dim / 4 - 1)
                                                                          : c.spec.head_dim;
    else
      c.spec.rotary_dim = c.partial_rotary && c.spec.head_dim / 2 - 1 >= fewest ? 2 * draw(rng, fewest, c.spec.head_dim / 2 - 1)
                                                                               : c.spec.head_dim;
    c.spec.base = draw(rng, 0, 1) ? 10000.0 : 500000.0;
    c.spec.scaling = scaling_of(c.family, c.spec.rotary_dim / 2, rng);
    if (c.xpos) {
      c.spec.xpos = Xpos{draw(rng, 0, 1) ? 512.0 : 64.0, 0.4};
      c.xpos_center_shift = static_cast<double>(draw(rng, -8, 8));  // 0 (the middle) among them
    }
    if (c.axis_map == AxisMap::mrope_chunked || c.axis_map == AxisMap::mrope_interleaved) {
      // sections that fit either mapping: 3h <= pairs + 1, 3w <= pairs
      const int64_t pairs = c.spec.rotary_dim / 2;
      const int64_t h = draw(rng, 0, (pairs + 1) / 3);
      const int64_t w = draw(rng, 0, pairs / 3);
      c.spec.mrope = MRope{{pairs - h - w, h, w}, c.axis_map == AxisMap::mrope_interleaved};
    }
    if (axial) c.spec.axial = Axial2d{c.axis_map == AxisMap::axial_odd};
  }
  c.spec.style = c.style;
  c.exact_rows = (c.cos_sin == CosSin::rows || c.cos_sin == CosSin::past_rows) && draw(rng, 0, 2) == 0;
  if (c.layout == Layout::thd) {
    c.batch = 1;
    c.seq = draw(rng, 1, 23);
  } else {
    c.batch = draw(rng, 1, kMaxCaseBatch);
    c.seq = draw(rng, 1, 9);
  }
  if (tokens > 0) c.seq = tokens;
  if (c.query_scale) {
    // Short lengths, so that t changes within a case's few positions.
    constexpr double factors[] = {1.0, 0.75, 1.5};
    c.query_scale->factor = factors[draw(rng, 0, 2)];
    c.query_scale->beta = draw(rng, 0, 1) ? 0.1 : 0.4;
    c.query_scale->length = draw(rng, 1, 8);
    c.query_scale->shift = draw(rng, 0, 1);
  }
  c.q_heads = draw(rng, 1, kMaxCaseQHeads);
  c.k_heads = draw(rng, 0, 5) == 0 ? 0 : draw(rng, 1, kMaxCaseKHeads);
  return c;
}

std::vector<Case> case_table(const CaseTableOptions& options) {
  const bool fixed_spec = options.spec.head_dim > 0;
  std::array<int, kDims> sizes{};
  sizes[kDtype] = 4;
  sizes[kStyle] = 2;
  sizes[kLayout] = sizes[kOutLayout] = 4;
  sizes[kPositions] = 6;
  sizes[kFamily] = fixed_spec ? 1 : static_cast<int>(ScalingFamily::fixed);  // every family but fixed
  sizes[kXpos] = sizes[kPartial] = fixed_spec ? 1 : 2;
  sizes[kDirection] = 3;
  sizes[kInPlace] = 2;
  sizes[kCosSin] = 4;
  sizes[kFar] = fixed_spec && options.spec.xpos ? 1 : 2;
  sizes[kQueryScale] = 2;
  sizes[kThreads] = 3;
  sizes[kAxisMap] = fixed_spec ? 1 : 5;
  CoveringBuilder builder(sizes, /*fixed: the same covering every run*/ 1);
  builder.cover(3);
  if (options.f64) builder.cover(4);

  std::vector<Case> table;
  std::mt19937_64 seeds(options.seed);
  for (const Point& x : builder.points()) table.push_back(complete(to_case(x, fixed_spec, options.spec), seeds(), options.spec, options.tokens));
  for (int i = 0; i < options.random_draws;) {
    Point x{};
    for (int d = 0; d < kDims; ++d) x[d] = static_cast<int>(seeds() % static_cast<uint64_t>(sizes[d]));
    if (!options.f64 && x[kDtype] == 3) continue;
    if (violations(x) > 0) continue;
    table.push_back(complete(to_case(x, fixed_spec, options.spec), seeds(), options.spec, options.tokens));
    ++i;
  }
  return table;
}

}  // namespace ropekit::cases
