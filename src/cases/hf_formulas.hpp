#pragma once
// Frequency formulas written out independently of ropekit, following HuggingFace transformers'
// rope-init functions (modeling_rope_utils) and jquesnelle's YaRN, in float64. ropekit's results are
// compared against these. Only the spec's parameters are read from ropekit, never its frequencies.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <utility>
#include <variant>
#include <vector>

#include "ropekit/spec.hpp"
#include "../visit.hpp"

namespace hf {

// torch: 1 / base ** (arange(0, dim, 2).float() / dim): the exponent is a float32 quotient.
inline double exponent(int64_t i, int64_t dim) {
  return static_cast<double>(static_cast<float>(2 * i) / static_cast<float>(dim));
}

inline std::vector<double> default_inv_freq(int64_t dim, double base) {
  std::vector<double> out;
  for (int64_t i = 0; i < dim / 2; ++i) out.push_back(1.0 / std::pow(base, exponent(i, dim)));
  return out;
}

// What torch computes end to end in float32 (pow of float32 operands, then 1 / x in float32).
inline std::vector<float> default_inv_freq_torch_f32(int64_t dim, double base) {
  std::vector<float> out;
  for (int64_t i = 0; i < dim / 2; ++i) {
    const float e = static_cast<float>(2 * i) / static_cast<float>(dim);
    out.push_back(1.0f / std::pow(static_cast<float>(base), e));
  }
  return out;
}

inline double correction_dim(double rotations, double dim, double base, double max_pos) {
  return (dim * std::log(max_pos / (rotations * 2.0 * std::numbers::pi))) / (2.0 * std::log(base));
}

inline double mscale(double scale, double m = 1.0) { return scale <= 1.0 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; }

// HF's find_correction_range plus the linear_ramp_factor guard: the pair range [low, high] of the blend.
inline std::pair<double, double> yarn_ramp_range(const ropekit::scaling::Yarn& s, int64_t dim, double base) {
  double low = correction_dim(s.beta_fast, static_cast<double>(dim), base, static_cast<double>(s.original_max));
  double high = correction_dim(s.beta_slow, static_cast<double>(dim), base, static_cast<double>(s.original_max));
  if (s.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;
  return {low, high};
}

inline std::vector<double> yarn_inv_freq(const ropekit::scaling::Yarn& s, int64_t dim, double base) {
  const auto [low, high] = yarn_ramp_range(s, dim, base);
  std::vector<double> out;
  for (int64_t i = 0; i < dim / 2; ++i) {
    const double pos_freq = std::pow(base, exponent(i, dim));
    const double extrapolation = 1.0 / pos_freq;
    const double interpolation = 1.0 / (s.factor * pos_freq);
    const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
    const double extrapolation_weight = (1.0 - ramp) * s.extrapolation_factor;
    out.push_back(interpolation * (1.0 - extrapolation_weight) + extrapolation * extrapolation_weight);
  }
  return out;
}

inline double yarn_attention(const ropekit::scaling::Yarn& s) {
  double a;
  if (s.attention_factor) {
    a = *s.attention_factor;
  } else if (s.mscale && s.mscale_all_dim && *s.mscale != 0 && *s.mscale_all_dim != 0) {
    a = mscale(s.factor, *s.mscale) / mscale(s.factor, *s.mscale_all_dim);
  } else {
    a = mscale(s.factor);
  }
  return a * s.attention_multiplier;
}

inline std::vector<double> llama3_inv_freq(const ropekit::scaling::Llama3& s, int64_t dim, double base) {
  const double old_context = static_cast<double>(s.original_max);
  const double low_wavelen = old_context / s.low_freq_factor;
  const double high_wavelen = old_context / s.high_freq_factor;
  std::vector<double> out;
  for (double f : default_inv_freq(dim, base)) {
    const double wavelen = 2.0 * std::numbers::pi / f;
    const double scaled = wavelen > low_wavelen ? f / s.factor : f;
    const double smooth = (old_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
    const double smoothed = (1.0 - smooth) * scaled / s.factor + smooth * scaled;
    const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
    out.push_back(medium ? smoothed : scaled);
  }
  return out;
}

inline std::vector<double> dynamic_inv_freq(const ropekit::scaling::DynamicNtk& s, int64_t dim, double base,
                                            int64_t seq_len) {
  const double max_pos = static_cast<double>(s.original_max);
  const double len = seq_len > s.original_max ? static_cast<double>(seq_len) : max_pos;
  const double d = static_cast<double>(dim);
  const double new_base = base * std::pow(s.factor * len / max_pos - (s.factor - 1.0), d / (d - 2.0));
  return default_inv_freq(dim, new_base);
}

inline std::vector<double> longrope_inv_freq(const ropekit::scaling::LongRope& s, int64_t dim, double base,
                                             int64_t seq_len) {
  const auto& ext = seq_len > s.original_max ? s.long_factor : s.short_factor;
  std::vector<double> out;
  for (int64_t i = 0; i < dim / 2; ++i)
    out.push_back(1.0 / (ext[static_cast<size_t>(i)] * std::pow(base, exponent(i, dim))));
  return out;
}

inline double longrope_attention(const ropekit::scaling::LongRope& s) {
  if (s.attention_factor) return *s.attention_factor;
  if (s.factor <= 1.0) return 1.0;
  return std::sqrt(1.0 + std::log(s.factor) / std::log(static_cast<double>(s.original_max)));
}

// Giraffe truncated basis: theta* replaces theta.
inline std::vector<double> truncated_inv_freq(const ropekit::scaling::Truncated& s, int64_t dim, double base) {
  std::vector<double> out;
  for (double theta : default_inv_freq(dim, base)) out.push_back(theta >= s.b ? theta : (theta >= s.a ? s.rho : 0.0));
  return out;
}

// Proportional (Gemma 4's full attention): int(partial_rotary_factor * head_dim // 2) pairs at the
// default frequencies over the whole dimension, divided by factor; the rest frequency 0.
inline std::vector<double> proportional_inv_freq(const ropekit::scaling::Proportional& s, int64_t dim, double base) {
  auto out = default_inv_freq(dim, base);
  const auto rotated = static_cast<size_t>(std::floor(s.fraction * static_cast<double>(dim) / 2.0));
  for (size_t i = 0; i < out.size(); ++i) out[i] = i < rotated ? out[i] / s.factor : 0.0;
  return out;
}

// M-RoPE's axis (0 t, 1 h, 2 w) of each frequency pair, as HF builds it. Chunked (Qwen2-VL's
// apply_multimodal_rotary_pos_emb): the pairs split into consecutive sections, section i taken
// from axis i. Interleaved (Qwen3-VL's apply_interleaved_mrope): everything from t, then the
// slices [1 : 3h : 3] from h and [2 : 3w : 3] from w.
inline std::vector<int> mrope_pair_axis(const ropekit::MRope& m, int64_t pairs) {
  std::vector<int> axis;
  if (!m.interleaved) {
    for (int a = 0; a < 3; ++a) axis.insert(axis.end(), static_cast<size_t>(m.sections[static_cast<size_t>(a)]), a);
    return axis;
  }
  axis.assign(static_cast<size_t>(pairs), 0);
  for (int a = 1; a < 3; ++a)
    for (int64_t j = a; j < std::min(3 * m.sections[static_cast<size_t>(a)], pairs); j += 3) axis[static_cast<size_t>(j)] = a;
  return axis;
}

inline std::vector<double> xpos_zeta(int64_t dim, double gamma) {
  std::vector<double> out;
  for (int64_t i = 0; i < dim / 2; ++i)
    out.push_back((2.0 * static_cast<double>(i) + gamma * static_cast<double>(dim)) / ((1.0 + gamma) * static_cast<double>(dim)));
  return out;
}

// The same pipelines as torch runs them in float32 (HF computes inv_freq with float32 tensors; only
// scalars such as the NTK base are Python doubles). ropekit (double) must agree to ~3e-7 relative.
namespace torch_f32 {

inline std::vector<float> yarn(const ropekit::scaling::Yarn& s, int64_t dim, double base) {
  const auto [low, high] = yarn_ramp_range(s, dim, base);
  std::vector<float> out;
  for (int64_t i = 0; i < dim / 2; ++i) {
    const float pos_freq = std::pow(static_cast<float>(base), static_cast<float>(2 * i) / static_cast<float>(dim));
    const float extrapolation = 1.0f / pos_freq;
    const float interpolation = 1.0f / (static_cast<float>(s.factor) * pos_freq);
    const float ramp = std::clamp((static_cast<float>(i) - static_cast<float>(low)) / static_cast<float>(high - low), 0.0f, 1.0f);
    const float w = (1.0f - ramp) * static_cast<float>(s.extrapolation_factor);
    out.push_back(interpolation * (1.0f - w) + extrapolation * w);
  }
  return out;
}

inline std::vector<float> llama3(const ropekit::scaling::Llama3& s, int64_t dim, double base) {
  const float old_context = static_cast<float>(s.original_max);
  const float low_wavelen = old_context / static_cast<float>(s.low_freq_factor);
  const float high_wavelen = old_context / static_cast<float>(s.high_freq_factor);
  const float factor = static_cast<float>(s.factor);
  std::vector<float> out;
  for (float f : default_inv_freq_torch_f32(dim, base)) {
    const float wavelen = 2.0f * std::numbers::pi_v<float> / f;
    const float scaled = wavelen > low_wavelen ? f / factor : f;
    const float smooth = (old_context / wavelen - static_cast<float>(s.low_freq_factor)) /
                         static_cast<float>(s.high_freq_factor - s.low_freq_factor);
    const float smoothed = (1.0f - smooth) * scaled / factor + smooth * scaled;
    const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
    out.push_back(medium ? smoothed : scaled);
  }
  return out;
}

}  // namespace torch_f32

// The frequencies of a spec by the formulas above (seq_len for the length-dependent schemes). One
// overload per family: a new family does not compile here until its formula is written.
inline std::vector<double> inv_freq(const ropekit::RopeSpec& spec, int64_t seq_len) {
  namespace sc = ropekit::scaling;
  const int64_t dim = spec.rotary_dim();
  const double base = spec.base();
  if (const auto& axial = spec.axial()) {
    if (axial->odd_second_half) {  // Pixtral: cat(inv_freq[0::2], inv_freq[1::2]) over the head
      const auto f = default_inv_freq(dim, base);
      std::vector<double> out;
      for (size_t start : {size_t{0}, size_t{1}})
        for (size_t i = start; i < f.size(); i += 2) out.push_back(f[i]);
      return out;
    }
    // Qwen2-VL's compute_axial_rope_parameters (and Llama 4 vision's rope_freq): frequencies over
    // half the head, the same for both halves.
    auto out = default_inv_freq(dim / 2, base);
    const auto copy = out;
    out.insert(out.end(), copy.begin(), copy.end());
    return out;
  }
  return std::visit(
      ropekit::detail::Overloaded{
          [&](const sc::None&) { return default_inv_freq(dim, base); },
          [&](const sc::Linear& s) {
            auto out = default_inv_freq(dim, base);
            for (double& f : out) f /= s.factor;
            return out;
          },
          [&](const sc::NtkAware& s) {
            const double d = static_cast<double>(dim);
            return default_inv_freq(dim, base * std::pow(s.alpha, d / (d - 2.0)));
          },
          [&](const sc::DynamicNtk& s) { return dynamic_inv_freq(s, dim, base, seq_len); },
          [&](const sc::Yarn& s) { return yarn_inv_freq(s, dim, base); },
          [&](const sc::Llama3& s) { return llama3_inv_freq(s, dim, base); },
          [&](const sc::LongRope& s) { return longrope_inv_freq(s, dim, base, seq_len); },
          [&](const sc::Truncated& s) { return truncated_inv_freq(s, dim, base); },
          [&](const sc::Proportional& s) { return proportional_inv_freq(s, dim, base); },
      },
      spec.scaling());
}

inline double attention(const ropekit::RopeSpec& spec) {
  namespace sc = ropekit::scaling;
  return std::visit(ropekit::detail::Overloaded{
                        [](const sc::Yarn& s) { return yarn_attention(s); },
                        [](const sc::LongRope& s) { return longrope_attention(s); },
                        [](const ropekit::detail::one_of<sc::None, sc::Linear, sc::NtkAware, sc::DynamicNtk, sc::Llama3,
                                                         sc::Truncated, sc::Proportional> auto&) { return 1.0; },
                    },
                    spec.scaling());
}

}  // namespace hf
