// `ropekit verify`: every kernel path this build has, against the float64 reference, random inputs.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

#include "check.hpp"
#include "cli.hpp"
#include "half_float.hpp"
#include "reference64.hpp"
#include "ropekit/apply.hpp"
#include "ropekit/table.hpp"
#include "ropekit/frequencies.hpp"

namespace ropekit::cli {
namespace {

using detail::cat;

double tolerance(DType d) { return d == DType::f32 ? 1e-5 : d == DType::f16 ? 1e-3 : 8e-3; }

constexpr int64_t kMaxVerifyElements = int64_t{1} << 24;
// The largest |ln xPos scale| verify uses: with scales in [e^-2, e^2] and inputs of at least 1e-3,
// every pair's norm stays above f16's smallest normal (6.1e-5) and far below its largest.
constexpr double kMaxXposExponent = 2.0;

// Storage for one tensor in any dtype, with float64 reads of what is stored.
struct Buffer {
  DType dtype;
  std::vector<float> f32;
  std::vector<uint16_t> bits;

  Buffer(DType d, size_t n) : dtype(d) {
    if (d == DType::f32) f32.resize(n); else bits.resize(n);
  }
  void* data() { return dtype == DType::f32 ? static_cast<void*>(f32.data()) : static_cast<void*>(bits.data()); }
  size_t size() const { return dtype == DType::f32 ? f32.size() : bits.size(); }
  void store(size_t i, float v) {
    if (dtype == DType::f32) f32[i] = v;
    else bits[i] = dtype == DType::f16 ? detail::float_to_half(v) : detail::float_to_bf16(v);
  }
  double load(size_t i) const {
    if (dtype == DType::f32) return f32[i];
    return dtype == DType::f16 ? detail::half_to_float(bits[i]) : detail::bf16_to_float(bits[i]);
  }
};

struct Case {
  DType dtype;
  Style style;
  Direction direction;
  bool compute_sincos;
};

const char* direction_name(Direction d) {
  return d == Direction::forward ? "forward" : d == Direction::backward ? "backward" : "inverse";
}

// Returns the worst relative error (NaN if any output is NaN).
double run_case(const Case& c, const RopeSpec& spec, const RopeTable& table, int64_t hq, int64_t hk, int64_t tokens,
                const std::vector<int64_t>& offsets, double xpos_center, std::mt19937_64& rng) {
  const int64_t batch = static_cast<int64_t>(offsets.size());
  const int64_t d = spec.head_dim();
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  auto fill = [&](Buffer& b) {
    for (size_t i = 0; i < b.size(); ++i) {
      float v = value(rng);
      if (std::fabs(v) < 1e-3f) v = 0.5f;  // never zeros
      b.store(i, v);
    }
  };
  const auto nq = static_cast<size_t>(batch * tokens * hq * d), nk = static_cast<size_t>(batch * tokens * hk * d);
  Buffer q(c.dtype, nq), k(c.dtype, nk), q_out(c.dtype, nq), k_out(c.dtype, nk);
  fill(q);
  fill(k);
  std::vector<double> q_in(nq), k_in(nk);
  for (size_t i = 0; i < nq; ++i) q_in[i] = q.load(i);
  for (size_t i = 0; i < nk; ++i) k_in[i] = k.load(i);

  RopeTensors t{TensorView::bshd(q.data(), c.dtype, batch, tokens, hq, d), TensorView::bshd(k.data(), c.dtype, batch, tokens, hk, d),
                std::nullopt, std::nullopt};
  // Table reads rotate in place; in-kernel sin/cos write to separate outputs (both forms get used).
  if (c.compute_sincos) {
    t.q_out = TensorView::bshd(q_out.data(), c.dtype, batch, tokens, hq, d);
    t.k_out = TensorView::bshd(k_out.data(), c.dtype, batch, tokens, hk, d);
  }
  ApplyOptions options;
  options.direction = c.direction;
  options.compute_sincos = c.compute_sincos;
  options.xpos_center = xpos_center;
  apply_rope(t, Positions::per_sequence(IndexView(offsets.data(), batch)), table, options);
  const Buffer& qr = c.compute_sincos ? q_out : q;
  const Buffer& kr = c.compute_sincos ? k_out : k;

  Reference64 ref;
  ref.rotary_dim = spec.rotary_dim();
  ref.interleaved = c.style == Style::interleaved;
  ref.inv_freq = table.inv_freq();
  ref.attention = attention_factor(spec);
  ref.xpos_zeta = xpos_zeta(spec);
  if (spec.xpos()) ref.xpos_scale_base = spec.xpos()->scale_base;
  ref.xpos_center = xpos_center;
  const RefDirection dir = c.direction == Direction::forward    ? RefDirection::forward
                           : c.direction == Direction::backward ? RefDirection::backward
                                                                : RefDirection::inverse;
  double worst = 0;
  auto check = [&](const std::vector<double>& in, const Buffer& got, int64_t heads, double sign) {
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t s = 0; s < tokens; ++s) {
        for (int64_t h = 0; h < heads; ++h) {
          const auto base = static_cast<size_t>(((b * tokens + s) * heads + h) * d);
          std::vector<double> x(in.begin() + static_cast<std::ptrdiff_t>(base),
                                in.begin() + static_cast<std::ptrdiff_t>(base + static_cast<size_t>(d)));
          const auto y = ref.rotate(x, offsets[static_cast<size_t>(b)] + s, sign, dir);
          const auto magnitude = ref.magnitudes(y);  // > 0: inputs are never zero, scales are bounded
          for (int64_t e = 0; e < d; ++e) {
            const double g = got.load(base + static_cast<size_t>(e)), r = y[static_cast<size_t>(e)];
            // Relative to the element's pair: one output rounding is 2^-24 (f32), 2^-11 (f16), 2^-8 (bf16).
            const double err = std::fabs(g - r) / magnitude[static_cast<size_t>(e)];
            if (std::isnan(err)) worst = NAN;
            if (!std::isnan(worst)) worst = std::max(worst, err);
          }
        }
      }
    }
  };
  check(q_in, qr, hq, +1.0);
  check(k_in, kr, hk, -1.0);
  return worst;
}

}  // namespace

int cmd_verify(const std::vector<std::string>& tokens, std::ostream& out) {
  std::set<std::string> values = spec_value_flags();
  values.insert({"tokens", "seed"});
  const Args args(tokens, "verify", values, {});
  const Resolved r = resolve(args, "llama3.1-8b");
  const int64_t seq = args.integer("tokens").value_or(16);
  const uint64_t seed = static_cast<uint64_t>(args.integer("seed").value_or(std::random_device{}()));
  const int64_t hq = r.num_attention_heads ? std::min<int64_t>(r.num_attention_heads, 8) : 4;
  const int64_t hk = r.num_key_value_heads ? std::min<int64_t>(r.num_key_value_heads, hq) : 2;
  if (const int64_t n = 2 * seq * (hq + hk) * r.spec.head_dim(); n > kMaxVerifyElements)
    throw UsageError("--tokens: expected at most " + std::to_string(kMaxVerifyElements) +
                     " q and k elements (2 x tokens x (q heads + k heads) x head_dim), got " + std::to_string(n));
  std::mt19937_64 rng(seed);
  // Two sequences at random offsets within the context (capped so the table stays small): positions
  // lowest .. lowest + range.
  int64_t lowest = 0;
  int64_t range = std::max<int64_t>(std::min<int64_t>(scaled_context(r), 32768) - seq, 1) + seq - 1;
  double center = 0.0;
  if (r.spec.xpos()) {
    // xPos scales zeta_i^(+-(p - center) / scale_base) grow exponentially with the distance from the
    // center: put the center mid-range and keep every position within `reach` of it.
    double most = 0.0;
    for (double z : xpos_zeta(r.spec)) most = std::max(most, std::fabs(std::log(z)) / r.spec.xpos()->scale_base);
    const auto reach = static_cast<int64_t>(std::min(kMaxXposExponent / most, 1e9));
    if (seq - 1 > 2 * reach)
      throw UsageError(cat("--tokens: expected at most ", 2 * reach + 1, " tokens with xPos scale_base ",
                           r.spec.xpos()->scale_base, " (scales within e^+-", kMaxXposExponent, "), got ", seq));
    const int64_t window = std::min(2 * reach, range);
    lowest = std::uniform_int_distribution<int64_t>(0, range - window)(rng);
    range = window;
    center = static_cast<double>(lowest) + static_cast<double>(window) / 2.0;
  }
  std::uniform_int_distribution<int64_t> offset(lowest, lowest + range - (seq - 1));
  const std::vector<int64_t> offsets = {offset(rng), offset(rng)};

  out << "verify " << (r.source == "flags" ? "flags" : r.source + " " + r.name) << ": " << r.spec.describe() << "\n";
  out << "q heads " << hq << ", k heads " << hk << ", 2 sequences x " << seq << " tokens at offsets " << offsets[0]
      << ", " << offsets[1];
  if (r.spec.xpos()) out << ", xPos center " << center;
  out << "; seed " << seed << "; reference: float64 (src/cli/reference64.hpp)\n";
  int passed = 0, total = 0;
  for (Style style : {Style::half, Style::interleaved}) {
    SpecParams p = r.spec.params();
    p.style = style;
    const RopeSpec spec(p);
    const RopeTable table(spec, *std::max_element(offsets.begin(), offsets.end()) + seq);
    for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
      for (Direction dir : {Direction::forward, Direction::backward, Direction::inverse}) {
        for (bool sincos : {false, true}) {
          const Case c{dtype, style, dir, sincos};
          const double worst = run_case(c, spec, table, hq, hk, seq, offsets, center, rng);
          const double tol = tolerance(dtype);
          const bool ok = worst <= tol;  // NaN never passes
          ++total;
          passed += ok;
          char line[200];
          std::snprintf(line, sizeof line, "%s  cpu  %-4s  %-11s  %-8s  %-13s  worst rel err %.3e  (tol %.0e)\n",
                        ok ? "PASS" : "FAIL", to_string(dtype).c_str(), to_string(style).c_str(), direction_name(dir),
                        sincos ? "compute_sincos" : "table", worst, tol);
          out << line;
        }
      }
    }
  }
  out << passed << "/" << total << " paths passed\n";
  return passed == total ? 0 : 1;
}

}  // namespace ropekit::cli
