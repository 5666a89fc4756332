// Default, linear, NTK-aware and dynamic NTK frequencies, the dispatch over families, and the
// attention factor.
#include "ropekit/frequencies.hpp"

#include <algorithm>
#include <cmath>

#include "frequencies/families.hpp"
#include "visit.hpp"

namespace ropekit {

std::vector<double> default_inv_freq(int64_t dim, double base) {
  std::vector<double> out(static_cast<size_t>(dim / 2));
  for (size_t i = 0; i < out.size(); ++i) {
    // torch: arange(0, dim, 2).float() / dim  -- the exponent is a float32 quotient.
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    out[i] = 1.0 / std::pow(base, static_cast<double>(exponent));
  }
  return out;
}

namespace {

// HF dynamic NTK: base * (factor * L / original - (factor - 1))^(d / (d - 2)) with L >= original.
double dynamic_ntk_base(const scaling::DynamicNtk& s, int64_t dim, double base, int64_t seq_len) {
  const double length = static_cast<double>(std::max(seq_len, s.original_max));
  const double d = static_cast<double>(dim);
  const double grow = s.factor * length / static_cast<double>(s.original_max) - (s.factor - 1.0);
  return base * std::pow(grow, d / (d - 2.0));
}

double ntk_aware_base(const scaling::NtkAware& s, int64_t dim, double base) {
  const double d = static_cast<double>(dim);
  return base * std::pow(s.alpha, d / (d - 2.0));
}

}  // namespace

std::vector<double> inv_freq(const RopeSpec& spec, int64_t seq_len) {
  const int64_t dim = spec.rotary_dim();
  const double base = spec.base();
  struct Visitor {
    int64_t dim;
    double base;
    int64_t seq_len;
    std::vector<double> operator()(const scaling::None&) const { return default_inv_freq(dim, base); }
    std::vector<double> operator()(const scaling::Linear& s) const {
      auto out = default_inv_freq(dim, base);
      for (auto& f : out) f /= s.factor;
      return out;
    }
    std::vector<double> operator()(const scaling::NtkAware& s) const {
      return default_inv_freq(dim, ntk_aware_base(s, dim, base));
    }
    std::vector<double> operator()(const scaling::DynamicNtk& s) const {
      return default_inv_freq(dim, dynamic_ntk_base(s, dim, base, seq_len));
    }
    std::vector<double> operator()(const scaling::Yarn& s) const { return detail::yarn_inv_freq(s, dim, base); }
    std::vector<double> operator()(const scaling::Llama3& s) const { return detail::llama3_inv_freq(s, dim, base); }
    std::vector<double> operator()(const scaling::LongRope& s) const {
      return detail::longrope_inv_freq(s, dim, base, seq_len);
    }
    std::vector<double> operator()(const scaling::Truncated& s) const {
      return detail::truncated_inv_freq(s, dim, base);
    }
    std::vector<double> operator()(const scaling::Proportional& s) const {
      auto out = default_inv_freq(dim, base);
      const size_t rotated = detail::proportional_rotated_pairs(s, dim);
      for (size_t i = 0; i < out.size(); ++i) out[i] = i < rotated ? out[i] / s.factor : 0.0;
      return out;
    }
  };
  auto out = std::visit(Visitor{dim, base, seq_len}, spec.scaling());
  if (const auto& axial = spec.axial()) {  // pair j of each half: pair 2j (second half: 2j + 1 if odd)
    const size_t half = out.size() / 2;
    std::vector<double> permuted(out.size());
    for (size_t j = 0; j < half; ++j) {
      permuted[j] = out[2 * j];
      permuted[half + j] = out[2 * j + (axial->odd_second_half ? 1 : 0)];
    }
    out = std::move(permuted);
  }
  return out;
}

double attention_factor(const RopeSpec& spec) {
  using namespace scaling;
  return std::visit(detail::Overloaded{
                        [](const Yarn& s) { return detail::yarn_attention_factor(s); },
                        [](const LongRope& s) { return detail::longrope_attention_factor(s); },
                        [](const detail::one_of<None, Linear, NtkAware, DynamicNtk, Llama3, Truncated, Proportional> auto&) {
                          return 1.0;
                        },
                    },
                    spec.scaling());
}

}  // namespace ropekit
