// Fuzz target 1: spec construction from arbitrary numbers across every scaling variant, the
// frequency helpers, and a small RopeTable. An accepted spec must give finite, non-negative
// frequencies, a finite attention factor > 0, a finite table and finite rotations; a rejected one
// must raise ropekit::Error (anything else escaping is a crash).
#include <cmath>
#include <string>
#include <vector>

#include "fuzz_common.hpp"
#include "ropekit/ropekit.hpp"

using namespace ropekit;
using ropekit_fuzz::nasty_double;
using ropekit_fuzz::nasty_int;

namespace {
const RopeSpec* current_spec = nullptr;  // printed with a violation, to read the failing input
[[noreturn]] void violated(const char* what) {
  if (current_spec) std::fprintf(stderr, "spec: %s\n", current_spec->describe().c_str());
  ropekit_fuzz::violated(what);
}
}  // namespace

namespace {

std::vector<double> factors(FuzzedDataProvider& in, int64_t pairs) {
  // Mostly the right length (rotary_dim / 2), sometimes not.
  int64_t n = in.ConsumeBool() ? pairs : in.ConsumeIntegralInRange<int64_t>(0, 70);
  n = std::min<int64_t>(std::max<int64_t>(n, 0), 4096);
  std::vector<double> out(static_cast<size_t>(n));
  for (auto& f : out) f = in.ConsumeBool() ? in.ConsumeFloatingPointInRange<double>(0.5, 64.0) : nasty_double(in, -4, 100);
  return out;
}

Scaling make_scaling(FuzzedDataProvider& in, int64_t pairs) {
  switch (in.ConsumeIntegralInRange<int>(0, 7)) {
    case 0: return scaling::None{};
    case 1: return scaling::Linear{nasty_double(in, 0.01, 64)};
    case 2: return scaling::NtkAware{nasty_double(in, 0.01, 64)};
    case 3: return scaling::DynamicNtk{nasty_double(in, 0.5, 64), nasty_int(in, -4, 1 << 20)};
    case 4: {
      scaling::Yarn y;
      y.factor = nasty_double(in, 0.01, 64);
      y.original_max = nasty_int(in, -4, 1 << 20);
      y.beta_fast = nasty_double(in, 0.01, 128);
      y.beta_slow = nasty_double(in, 0.01, 128);
      y.extrapolation_factor = nasty_double(in, -1, 2);
      y.attention_multiplier = nasty_double(in, 0.01, 4);
      if (in.ConsumeBool()) y.mscale = nasty_double(in, -4, 4);
      if (in.ConsumeBool()) y.mscale_all_dim = nasty_double(in, -4, 4);
      if (in.ConsumeBool()) y.attention_factor = nasty_double(in, -1, 4);
      y.truncate = in.ConsumeBool();
      return y;
    }
    case 5:
      return scaling::Llama3{nasty_double(in, 0.01, 64), nasty_double(in, 0.01, 8), nasty_double(in, 0.01, 8),
                             nasty_int(in, -4, 1 << 20)};
    case 6: {
      scaling::LongRope l;
      l.short_factor = factors(in, pairs);
      l.long_factor = factors(in, pairs);
      l.original_max = nasty_int(in, -4, 1 << 20);
      l.factor = nasty_double(in, 0.01, 64);
      if (in.ConsumeBool()) l.attention_factor = nasty_double(in, -1, 4);
      return l;
    }
    default:
      if (in.ConsumeBool()) {
        try {
          return scaling::Truncated::from_length(nasty_double(in, 1, 1e6));
        } catch (const Error&) {
          return scaling::None{};
        }
      }
      return scaling::Truncated{nasty_double(in, 0, 1), nasty_double(in, 0, 1), nasty_double(in, 0, 1)};
  }
}

void check_frequencies(const RopeSpec& spec, int64_t seq_len) {
  const auto f = inv_freq(spec, seq_len);
  if (static_cast<int64_t>(f.size()) != spec.pairs()) violated("inv_freq has rotary_dim / 2 values");
  for (double v : f)
    if (!std::isfinite(v) || v < 0) violated("inv_freq of an accepted spec is finite and >= 0");
}

void exercise_helpers(FuzzedDataProvider& in) {
  const double a = nasty_double(in, -10, 200), b = nasty_double(in, -10, 200);
  const double dim = nasty_double(in, 2, 512), base = nasty_double(in, 1, 1e7), mpe = nasty_double(in, 1, 1e6);
  (void)find_correction_dim(a, dim, base, mpe);
  (void)find_correction_range(a, b, dim, base, mpe, in.ConsumeBool());
  (void)linear_ramp_mask(a, b, in.ConsumeIntegralInRange<int64_t>(-3, 512));
  (void)get_mscale(a, b);
  (void)default_inv_freq(in.ConsumeIntegralInRange<int64_t>(0, 512), base);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  if (in.ConsumeIntegralInRange<int>(0, 7) == 0) {
    exercise_helpers(in);
    return 0;
  }
  SpecParams p;
  p.head_dim = in.ConsumeBool() ? 2 * in.ConsumeIntegralInRange<int64_t>(0, 64) : nasty_int(in, -4, 300);
  p.rotary_dim = in.ConsumeBool() ? 0 : (in.ConsumeBool() ? p.head_dim / 2 : nasty_int(in, -4, 300));
  p.base = nasty_double(in, 1, 1e7);
  p.style = static_cast<Style>(in.ConsumeIntegralInRange<int>(0, 2));
  const int64_t rd = p.rotary_dim == 0 ? p.head_dim : p.rotary_dim;
  p.scaling = make_scaling(in, rd > 0 && rd < (1 << 20) ? rd / 2 : 4);
  if (in.ConsumeBool()) p.xpos = Xpos{nasty_double(in, 0.5, 4096), nasty_double(in, 0.01, 2)};
  if (in.ConsumeIntegralInRange<int>(0, 3) == 0)
    p.mrope = MRope{{nasty_int(in, -2, 70), nasty_int(in, -2, 70), nasty_int(in, -2, 70)}, in.ConsumeBool()};
  if (in.ConsumeIntegralInRange<int>(0, 3) == 0) p.axial = Axial2d{in.ConsumeBool()};

  std::optional<RopeSpec> spec;
  try {
    spec.emplace(p);
  } catch (const Error&) {
    return 0;
  }
  current_spec = &*spec;
  (void)spec->describe();
  for (int64_t j = 0; j < spec->pairs() && j < 4096; ++j) {  // an accepted map puts every pair on one of its axes
    const int axis = spec->pair_axis(j);
    if (axis < 0 || axis >= spec->position_axes()) violated("pair_axis(j) is an axis of the spec");
  }
  if (spec->pairs() > 1024) return 0;  // keep tables small (the fuzzer's memory limit)

  check_frequencies(*spec, 0);
  check_frequencies(*spec, nasty_int(in, 0, 1 << 16) & ((int64_t{1} << 40) - 1));
  const double af = attention_factor(*spec);
  if (!std::isfinite(af) || af <= 0) violated("attention factor of an accepted spec is finite and > 0");
  const auto zeta = xpos_zeta(*spec);
  for (double z : zeta)
    if (!std::isfinite(z) || z <= 0) violated("xpos zeta is finite and > 0");

  TableOptions options;
  options.exact = in.ConsumeBool();
  RopeTable table(*spec, in.ConsumeIntegralInRange<int64_t>(0, 64), options);
  try {
    const int64_t seq_len = in.ConsumeIntegralInRange<int64_t>(-2, 300);
    const RopeTable rescaled = table.for_seq_len(seq_len);
    if (seq_len < 0 || rescaled.size() < seq_len) violated("for_seq_len(n) covers n positions or throws");
    if (rescaled.seq_len() != frequency_seq_len(*spec, seq_len)) violated("for_seq_len(n) records its frequencies' seq_len");
    table = rescaled;
  } catch (const Error&) {
  }
  const int64_t n = nasty_int(in, 0, 300);
  const bool too_big = n > 0 && spec->pairs() > 0 && n > (int64_t{1} << 24) / (2 * spec->pairs());
  if (!too_big || n > (int64_t{1} << 31)) {
    try {
      const RopeTable grown = table.grown(n);
      if (n < 0 || grown.size() < n) violated("grown(n) covers n positions or throws");
      if (grown.inv_freq() != table.inv_freq()) violated("grown(n) keeps the frequencies");
      table = grown;
    } catch (const Error&) {
      if (n >= 0 && n <= (int64_t{1} << 31)) violated("grown(n) throws only for n outside [0, 2^31]");
    }
  }
  for (float v : table.rows())
    if (!std::isfinite(v)) violated("cos/sin table of an accepted spec is finite");
  for (double v : table.xpos_log_zeta())
    if (!std::isfinite(v)) violated("xpos ln(zeta) / scale_base is finite");

  // Rotate a small tensor at small positions: finite in, finite out.
  const int64_t seq = in.ConsumeIntegralInRange<int64_t>(1, 8);
  const int64_t start = in.ConsumeIntegralInRange<int64_t>(0, 32);
  std::vector<float> q(static_cast<size_t>(seq * 2 * spec->head_dim()));
  for (size_t i = 0; i < q.size(); ++i) q[i] = static_cast<float>((i % 7) + 1) * 0.125f;
  ApplyOptions ao;
  ao.direction = static_cast<Direction>(in.ConsumeIntegralInRange<int>(0, 2));
  ao.compute_sincos = in.ConsumeBool();
  try {
    apply_rope({TensorView::bshd(q.data(), DType::f32, 1, seq, 2, spec->head_dim())}, Positions::from_offset(start),
               table, ao);
  } catch (const Error& e) {
    // xPos scales are zeta^(+-p / scale_base): apply refuses positions whose scale would leave
    // float32's range (extreme accepted scale_base or gamma); nothing else may fail here.
    if (!spec->xpos() || std::string(e.what()).find("positions.start: expected positions within") == std::string::npos)
      violated("rotation with an accepted spec at small positions is accepted");
    current_spec = nullptr;
    return 0;
  }
  for (float v : q)
    if (!std::isfinite(v)) violated("rotation with an accepted spec at small positions is finite");
  current_spec = nullptr;
  return 0;
}
