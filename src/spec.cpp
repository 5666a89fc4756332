#include "ropekit/spec.hpp"

#include <cmath>
#include <limits>
#include <numbers>

#include "check.hpp"
#include "ropekit/frequencies.hpp"
#include "rope_math.hpp"

namespace ropekit {
namespace {

using detail::cat;
using detail::fail;

void validate(const scaling::None&, const SpecParams&) {}

void validate(const scaling::Linear& s, const SpecParams&) {
  detail::require_finite_positive(s.factor, "scaling.linear.factor");
}

void validate(const scaling::NtkAware& s, const SpecParams& p) {
  detail::require_finite_positive(s.alpha, "scaling.ntk_aware.alpha");
  if (p.rotary_dim <= 2) fail("rotary_dim", "> 2 for ntk_aware (exponent d / (d - 2))", p.rotary_dim);
}

void validate(const scaling::DynamicNtk& s, const SpecParams& p) {
  detail::require_finite_at_least(s.factor, 1.0, "scaling.dynamic.factor");
  if (s.original_max <= 0) fail("scaling.dynamic.original_max", "> 0", s.original_max);
  if (p.rotary_dim <= 2) fail("rotary_dim", "> 2 for dynamic NTK (exponent d / (d - 2))", p.rotary_dim);
}

void validate(const scaling::Yarn& s, const SpecParams&) {
  detail::require_finite_positive(s.factor, "scaling.yarn.factor");
  if (s.original_max <= 0) fail("scaling.yarn.original_max", "> 0", s.original_max);
  detail::require_finite_positive(s.beta_fast, "scaling.yarn.beta_fast");
  detail::require_finite_positive(s.beta_slow, "scaling.yarn.beta_slow");
  detail::require_finite_at_least(s.extrapolation_factor, 0.0, "scaling.yarn.extrapolation_factor");
  detail::require_finite_positive(s.attention_multiplier, "scaling.yarn.attention_multiplier");
  if (s.mscale) detail::require_finite(*s.mscale, "scaling.yarn.mscale");
  if (s.mscale_all_dim) detail::require_finite(*s.mscale_all_dim, "scaling.yarn.mscale_all_dim");
  if (s.attention_factor) detail::require_finite_positive(*s.attention_factor, "scaling.yarn.attention_factor");
}

void validate(const scaling::Llama3& s, const SpecParams&) {
  detail::require_finite_positive(s.factor, "scaling.llama3.factor");
  detail::require_finite_positive(s.low_freq_factor, "scaling.llama3.low_freq_factor");
  detail::require_finite_positive(s.high_freq_factor, "scaling.llama3.high_freq_factor");
  if (!(s.high_freq_factor > s.low_freq_factor))
    fail("scaling.llama3.high_freq_factor", cat("> low_freq_factor (", s.low_freq_factor, ")"), s.high_freq_factor);
  if (s.original_max <= 0) fail("scaling.llama3.original_max", "> 0", s.original_max);
}

void validate(const scaling::LongRope& s, const SpecParams& p) {
  const auto pairs = static_cast<size_t>(p.rotary_dim / 2);
  if (s.short_factor.size() != pairs)
    fail("scaling.longrope.short_factor", cat(pairs, " values (rotary_dim / 2)"), cat(s.short_factor.size(), " values"));
  if (s.long_factor.size() != pairs)
    fail("scaling.longrope.long_factor", cat(pairs, " values (rotary_dim / 2)"), cat(s.long_factor.size(), " values"));
  for (size_t i = 0; i < pairs; ++i) {
    detail::require_finite_positive(s.short_factor[i], cat("scaling.longrope.short_factor[", i, "]"));
    detail::require_finite_positive(s.long_factor[i], cat("scaling.longrope.long_factor[", i, "]"));
  }
  if (s.original_max <= 0) fail("scaling.longrope.original_max", "> 0", s.original_max);
  detail::require_finite_positive(s.factor, "scaling.longrope.factor");
  if (s.attention_factor) detail::require_finite_positive(*s.attention_factor, "scaling.longrope.attention_factor");
}

void validate(const scaling::Truncated& s, const SpecParams&) {
  detail::require_finite_at_least(s.a, 0.0, "scaling.truncated.a");
  detail::require_finite_at_least(s.b, 0.0, "scaling.truncated.b");
  detail::require_finite_at_least(s.rho, 0.0, "scaling.truncated.rho");
  if (s.a > s.b) fail("scaling.truncated.a", cat("<= b (", s.b, ")"), s.a);
}

void validate(const scaling::Proportional& s, const SpecParams&) {
  detail::require_finite_positive(s.fraction, "scaling.proportional.fraction");
  if (s.fraction > 1.0) fail("scaling.proportional.fraction", "a number in (0, 1]", s.fraction);
  detail::require_finite_positive(s.factor, "scaling.proportional.factor");
}

// The sections must cover the pairs exactly, each pair on one axis (ropekit/spec.hpp MRope).
void validate_mrope(const MRope& m, const SpecParams& p) {
  const int64_t pairs = p.rotary_dim / 2;
  int64_t sum = 0;
  for (size_t a = 0; a < 3; ++a) {
    if (m.sections[a] < 0 || m.sections[a] > pairs) fail(cat("mrope.sections[", a, "]"), cat("in [0, ", pairs, "]"), m.sections[a]);
    sum += m.sections[a];
  }
  const auto listed = cat("[", m.sections[0], ", ", m.sections[1], ", ", m.sections[2], "]");
  if (sum != pairs) fail("mrope.sections", cat("pair counts summing to rotary_dim / 2 (", pairs, ")"), listed);
  // Interleaved: height takes pairs 1, 4, ... below 3h and width 2, 5, ... below 3w; both lists
  // must fit in the pairs for the counts to be h and w.
  if (m.interleaved && (3 * m.sections[1] > pairs + 1 || 3 * m.sections[2] > pairs))
    fail("mrope.sections", cat("interleaved sections with 3 h <= ", pairs + 1, " and 3 w <= ", pairs, " (", pairs, " pairs)"), listed);
  if (p.xpos) fail("xpos", "absent with mrope (no model combines them)", "an xpos scale");
}

const char* name_of(const Scaling& scaling) {
  static constexpr const char* names[] = {"none", "linear", "ntk_aware", "dynamic", "yarn", "llama3", "longrope",
                                          "truncated", "proportional"};
  return names[scaling.index()];
}

void validate_axial(const SpecParams& p) {
  if (p.rotary_dim % 4 != 0) fail("rotary_dim", "a multiple of 4 for axial 2-D RoPE (two halves of pairs)", p.rotary_dim);
  if (p.mrope) fail("mrope", "absent with axial (one multi-axis mapping)", "M-RoPE sections");
  if (p.xpos) fail("xpos", "absent with axial (no model combines them)", "an xpos scale");
  if (!std::holds_alternative<scaling::None>(p.scaling))
    fail("scaling", "none with axial (the vision encoders' frequencies)", name_of(p.scaling));
}

std::string describe_scaling(const Scaling& scaling) {
  struct Visitor {
    std::string operator()(const scaling::None&) const { return "none"; }
    std::string operator()(const scaling::Linear& s) const { return cat("linear(factor=", s.factor, ")"); }
    std::string operator()(const scaling::NtkAware& s) const { return cat("ntk_aware(alpha=", s.alpha, ")"); }
    std::string operator()(const scaling::DynamicNtk& s) const {
      return cat("dynamic(factor=", s.factor, ", original_max=", s.original_max, ")");
    }
    std::string operator()(const scaling::Yarn& s) const {
      std::string out = cat("yarn(factor=", s.factor, ", original_max=", s.original_max, ", beta_fast=", s.beta_fast,
                            ", beta_slow=", s.beta_slow);
      if (s.extrapolation_factor != 1.0) out += cat(", extrapolation_factor=", s.extrapolation_factor);
      if (s.attention_multiplier != 1.0) out += cat(", attention_multiplier=", s.attention_multiplier);
      if (s.mscale) out += cat(", mscale=", *s.mscale);
      if (s.mscale_all_dim) out += cat(", mscale_all_dim=", *s.mscale_all_dim);
      if (s.attention_factor) out += cat(", attention_factor=", *s.attention_factor);
      if (!s.truncate) out += ", truncate=false";
      return out + ")";
    }
    std::string operator()(const scaling::Llama3& s) const {
      return cat("llama3(factor=", s.factor, ", low_freq_factor=", s.low_freq_factor,
                 ", high_freq_factor=", s.high_freq_factor, ", original_max=", s.original_max, ")");
    }
    std::string operator()(const scaling::LongRope& s) const {
      std::string out = cat("longrope(original_max=", s.original_max, ", factor=", s.factor);
      if (s.attention_factor) out += cat(", attention_factor=", *s.attention_factor);
      return out + cat(", ", s.short_factor.size(), " short/long factors)");
    }
    std::string operator()(const scaling::Truncated& s) const {
      return cat("truncated(a=", s.a, ", b=", s.b, ", rho=", s.rho, ")");
    }
    std::string operator()(const scaling::Proportional& s) const {
      return cat("proportional(fraction=", s.fraction, ", factor=", s.factor, ")");
    }
  };
  return std::visit(Visitor{}, scaling);
}

// Each field may be in range and the combination still break the tables (a linear factor of 1e-45,
// an NTK alpha that pushes the base below 1, a YaRN mscale ratio dividing by zero). So check what the
// spec produces: inverse frequencies in [0, 2^20] keep float32 angles finite for every int64
// position; an attention factor in [2^-20, 2^20] keeps cos, sin and the inverse's 1/a^2 finite in
// float32; xPos exponents ln(zeta)/scale_base must be finite.
void validate_results(const RopeSpec& spec) {
  constexpr double kMaxInvFreq = 1 << 20;
  constexpr double kAttentionRange = 1 << 20;
  const std::string what = "scaling." + spec.scaling_name();
  std::vector<int64_t> lengths = {0};
  if (const auto* l = std::get_if<scaling::LongRope>(&spec.scaling()))
    lengths.push_back(l->original_max == INT64_MAX ? l->original_max : l->original_max + 1);  // long factors
  for (int64_t length : lengths) {
    const auto f = inv_freq(spec, length);
    for (size_t i = 0; i < f.size(); ++i) {
      if (!(f[i] >= 0.0 && f[i] <= kMaxInvFreq))
        fail(what, "parameters giving inverse frequencies in [0, 2^20] (finite angles)", cat("inv_freq[", i, "] = ", f[i]));
    }
  }
  const double a = attention_factor(spec);
  if (!(a >= 1.0 / kAttentionRange && a <= kAttentionRange))
    fail(what, "parameters giving an attention factor in [2^-20, 2^20]", a);
  if (spec.xpos()) {
    for (double zeta : xpos_zeta(spec)) {
      if (!std::isfinite(std::log(zeta) / spec.xpos()->scale_base))
        fail("xpos.scale_base", cat("a scale with ln(zeta) / scale_base finite (zeta = ", zeta, ")"), spec.xpos()->scale_base);
    }
  }
}

}  // namespace

scaling::Truncated scaling::Truncated::from_length(double length) {
  detail::require_finite_positive(length, "scaling.truncated.length");
  const double b = 2.0 * std::numbers::pi / length;
  if (!std::isfinite(b)) fail("scaling.truncated.length", "a length with 2*pi / length finite", length);  // denormal
  return {b / 8.0, b, b / 16.0};
}

RopeSpec::RopeSpec(SpecParams params) {
  auto owned = std::make_shared<SpecParams>(std::move(params));
  SpecParams& p = *owned;
  if (p.head_dim <= 0 || p.head_dim % 2 != 0 || p.head_dim > kMaxHeadDim)
    fail("head_dim", cat("an even number in [2, ", kMaxHeadDim, "]"), p.head_dim);
  if (p.rotary_dim == 0) p.rotary_dim = p.head_dim;
  if (p.rotary_dim < 0 || p.rotary_dim % 2 != 0) fail("rotary_dim", "an even number > 0", p.rotary_dim);
  if (p.rotary_dim > p.head_dim) fail("rotary_dim", cat("<= head_dim (", p.head_dim, ")"), p.rotary_dim);
  if (!std::isfinite(p.base) || p.base <= 1.0) fail("base", "a finite number > 1", p.base);
  if (p.style != Style::half && p.style != Style::interleaved) fail("style", "half or interleaved", static_cast<int>(p.style));
  std::visit([&](const auto& s) { validate(s, p); }, p.scaling);
  if (p.xpos) {
    detail::require_finite_positive(p.xpos->scale_base, "xpos.scale_base");
    detail::require_finite_positive(p.xpos->gamma, "xpos.gamma");
  }
  if (p.mrope) validate_mrope(*p.mrope, p);
  if (p.axial) validate_axial(p);
  params_ = std::move(owned);
  validate_results(*this);
}

std::string to_string(Style style) { return style == Style::half ? "half" : "interleaved"; }

Style style_from_string(const std::string& name) {
  if (name == "half" || name == "neox") return Style::half;
  if (name == "interleaved" || name == "gptj") return Style::interleaved;
  fail("style", "\"half\" or \"interleaved\"", cat('"', name, '"'));
}

int RopeSpec::pair_axis(int64_t j) const {
  if (j < 0 || j >= pairs()) fail("pair", cat("in [0, ", pairs(), ")"), j);
  return detail::pair_axes_of(*this).of(j);
}

std::string RopeSpec::style_name() const { return to_string(params_->style); }

std::string RopeSpec::scaling_name() const { return name_of(params_->scaling); }

std::string RopeSpec::describe() const {
  std::string out = cat("head_dim=", head_dim(), " rotary_dim=", rotary_dim(), " base=", base(),
                        " style=", style_name(), " scaling=", describe_scaling(params_->scaling));
  if (params_->xpos) out += cat(" xpos(scale_base=", params_->xpos->scale_base, ", gamma=", params_->xpos->gamma, ")");
  if (const auto& m = params_->mrope)
    out += cat(" mrope(sections=", m->sections[0], ",", m->sections[1], ",", m->sections[2],
               m->interleaved ? ", interleaved" : "", ")");
  if (const auto& a = params_->axial) out += a->odd_second_half ? " axial(odd second half)" : " axial";
  return out;
}

}  // namespace ropekit

namespace ropekit {

void QueryScale::validate(const std::string& what) const {
  // 1e-30 keeps fp32 t and 1 / t (the inverse) finite and normal.
  detail::require_finite_at_least(factor, 1e-30, what + ".factor");
  detail::require_finite_at_least(beta, 0.0, what + ".beta");
  if (length <= 0) fail(what + ".length", "an integer > 0", length);
  if (shift < 0 || shift > length) fail(what + ".shift", cat("an integer in [0, length (", length, ")]"), shift);
  // The largest t (at the largest position) must be a finite float: the kernels multiply by it.
  const double most = detail::query_scale_at(*this, std::numeric_limits<int64_t>::max() - 1);
  if (!(most < static_cast<double>(std::numeric_limits<float>::max())))
    fail(what, "factor * (1 + beta ln(1 + 2^63 / length)) below float32's largest value", most);
}

double QueryScale::at(int64_t position) const {
  if (position < 0) fail("position", ">= 0", position);
  validate();
  return detail::query_scale_at(*this, position);
}

std::string QueryScale::describe() const {
  std::string out = factor != 1.0 ? cat(factor, " x ") : std::string();
  if (beta == 0.0) return factor != 1.0 ? cat(factor) : std::string("1");
  const std::string steps = shift != 0 ? cat("floor((p + ", shift, ") / ", length, ")") : cat("floor(p / ", length, ")");
  const std::string inner = cat("1 + ", beta, " ln(1 + ", steps, ")");
  return factor != 1.0 ? cat(out, "(", inner, ")") : inner;
}

}  // namespace ropekit
