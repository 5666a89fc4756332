#pragma once
// Layer 1: what rotation to apply. A RopeSpec is validated when it is built: a bad spec never exists.
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "ropekit/export.hpp"

namespace ropekit {

// Which elements form a rotated pair.
//   half:        (i, i + rotary_dim/2)  -- HF / GPT-NeoX `rotate_half`
//   interleaved: (2i, 2i + 1)           -- GPT-J, LLaMA's complex form, `rotate_every_two`
enum class Style { half, interleaved };

namespace scaling {

struct None {
  bool operator==(const None&) const = default;
};

// Position interpolation: inv_freq / factor.
struct Linear {
  double factor = 1.0;
  bool operator==(const Linear&) const = default;
};

// NTK-aware base change: base * alpha^(d / (d - 2)).
struct NtkAware {
  double alpha = 1.0;
  bool operator==(const NtkAware&) const = default;
};

// HF "dynamic": the NTK base grows with the sequence length once it passes original_max.
struct DynamicNtk {
  double factor = 1.0;
  int64_t original_max = 2048;
  bool operator==(const DynamicNtk&) const = default;
};

// YaRN (HF "yarn" and jquesnelle's reference, which adds extrapolation_factor and a multiplier on the
// attention factor: its attn_factor, Zeta's name, here attention_multiplier).
struct Yarn {
  double factor = 1.0;
  int64_t original_max = 2048;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double extrapolation_factor = 1.0;
  double attention_multiplier = 1.0;
  std::optional<double> mscale;            // DeepSeek-style: attention = mscale(f, mscale) / mscale(f, mscale_all_dim)
  std::optional<double> mscale_all_dim;
  std::optional<double> attention_factor;  // overrides the computed attention factor
  bool truncate = true;                    // floor/ceil the correction range (HF's `truncate`)
  bool operator==(const Yarn&) const = default;
};

// Llama 3.1 frequency-dependent interpolation.
struct Llama3 {
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max = 8192;
  bool operator==(const Llama3&) const = default;
};

// LongRoPE (Phi-3): per-pair factors, short below original_max, long above.
struct LongRope {
  std::vector<double> short_factor;
  std::vector<double> long_factor;
  int64_t original_max = 4096;
  double factor = 1.0;                     // max_position_embeddings / original_max (attention factor only)
  std::optional<double> attention_factor;  // overrides sqrt(1 + ln(factor) / ln(original_max))
  bool operator==(const LongRope&) const = default;
};

// Proportional RoPE (HF "proportional", Gemma 4's full-attention layers): the first
// int(fraction * rotary_dim / 2) pairs rotate at base^(-2i / rotary_dim), the whole rotary_dim in
// the exponent, divided by factor; the other pairs get frequency 0 and pass through unchanged. With
// half style the pairs are (i, i + rotary_dim/2) across the whole head. (HF's usual partial rotary
// shortens rotary_dim instead, which changes both the exponent and the pairing.)
struct Proportional {
  double fraction = 1.0;  // HF: partial_rotary_factor of the rope_parameters entry
  double factor = 1.0;
  bool operator==(const Proportional&) const = default;
};

// Giraffe truncated basis: theta*_k = theta_k if theta_k >= b, rho if a <= theta_k < b, 0 below a.
struct ROPEKIT_API Truncated {
  double a = 0.0;
  double b = 0.0;
  double rho = 0.0;
  // b = 2*pi / length, a = b / 8, rho = b / 16.
  static Truncated from_length(double length);
  bool operator==(const Truncated&) const = default;
};

}  // namespace scaling

using Scaling = std::variant<scaling::None, scaling::Linear, scaling::NtkAware, scaling::DynamicNtk,
                             scaling::Yarn, scaling::Llama3, scaling::LongRope, scaling::Truncated,
                             scaling::Proportional>;

// xPos: pair i of q is scaled by zeta_i^(p / scale_base), of k by zeta_i^(-p / scale_base),
// zeta_i = (2i + gamma * rotary_dim) / ((1 + gamma) * rotary_dim).
struct Xpos {
  double scale_base = 512.0;
  double gamma = 0.4;
  bool operator==(const Xpos&) const = default;
};

// Multimodal RoPE (M-RoPE): each frequency pair turns with one of three position coordinates,
// time, height and width (axes 0, 1, 2 of Positions::token_ids with 3 axes, ropekit/apply.hpp).
// sections = {t, h, w} pair counts, summing to rotary_dim / 2.
//   chunked (Qwen2-VL, Qwen2.5-VL; GLM-4V with the interleaved style and partial rotary): the first t
//     pairs use time, the next h height, the last w width;
//   interleaved (Qwen3-VL, Qwen3.5): pair j uses height when j % 3 == 1 and j < 3h, width when
//     j % 3 == 2 and j < 3w, time otherwise.
// Where the three coordinates are equal (text tokens, or positions with one axis) it is plain RoPE.
struct MRope {
  std::array<int64_t, 3> sections{};
  bool interleaved = false;
  bool operator==(const MRope&) const = default;
};

// Vision-encoder 2-D RoPE (axial): the pairs split in two halves, the first turned by positions
// axis 0 and the second by axis 1 (Positions::token_ids with 2 axes, axis-major (2, N)). Pair j of
// a half takes the frequency of pair 2j of the plain RoPE over rotary_dim: the even frequencies in
// both halves (the Qwen2-VL, Qwen2.5-VL, Qwen3-VL and GLM-4V vision towers, half style, axis 0 the
// row; Llama 4 vision, interleaved, axis 0 the column + 1, axis 1 the row + 1), or the odd ones in
// the second half (odd_second_half: Pixtral, half style, axis 0 the row). rotary_dim a multiple of
// 4; no scaling, xPos or M-RoPE.
struct Axial2d {
  bool odd_second_half = false;
  bool operator==(const Axial2d&) const = default;
};

// 65536 is far past any model (512 today) and keeps per-pair vectors and table rows small.
inline constexpr int64_t kMaxHeadDim = int64_t{1} << 16;

struct SpecParams {
  int64_t head_dim = 0;  // even, in [2, kMaxHeadDim]
  int64_t rotary_dim = 0;  // 0 means head_dim; partial rotary otherwise
  double base = 10000.0;   // theta
  Style style = Style::half;
  Scaling scaling = scaling::None{};
  std::optional<Xpos> xpos;
  std::optional<MRope> mrope;  // not with xpos
  std::optional<Axial2d> axial;
  bool operator==(const SpecParams&) const = default;
};

class ROPEKIT_API RopeSpec {
 public:
  // Throws ropekit::Error naming the first invalid field.
  explicit RopeSpec(SpecParams params);
  // Copies share the parameters; declared so that a move copies too and never leaves an empty spec.
  RopeSpec(const RopeSpec&) = default;
  RopeSpec& operator=(const RopeSpec&) = default;

  const SpecParams& params() const { return *params_; }
  int64_t head_dim() const { return params_->head_dim; }
  int64_t rotary_dim() const { return params_->rotary_dim; }
  int64_t pairs() const { return params_->rotary_dim / 2; }
  double base() const { return params_->base; }
  Style style() const { return params_->style; }
  const Scaling& scaling() const { return params_->scaling; }
  const std::optional<Xpos>& xpos() const { return params_->xpos; }
  const std::optional<MRope>& mrope() const { return params_->mrope; }
  const std::optional<Axial2d>& axial() const { return params_->axial; }
  // Position axes a token may carry: 3 with M-RoPE, 2 axial, else 1 (one axis always works).
  int64_t position_axes() const { return params_->mrope ? 3 : params_->axial ? 2 : 1; }
  // The position axis that turns pair j (0 <= j < pairs()): 0 without mrope or axial.
  int pair_axis(int64_t j) const;
  // Every parameter equal (LongRoPE's factor lists included).
  bool operator==(const RopeSpec& other) const { return params_ == other.params_ || *params_ == *other.params_; }

  // "half" / "interleaved", "none" / "linear" / "ntk_aware" / "dynamic" / "yarn" / "llama3" / "longrope" / "truncated" /
  // "proportional".
  std::string style_name() const;
  std::string scaling_name() const;
  // One line, e.g. "head_dim=128 rotary_dim=128 base=500000 style=half scaling=llama3(factor=8, ...)".
  std::string describe() const;

 private:
  // Shared and immutable: copies are cheap (a model's layers, tables and views all hold one).
  std::shared_ptr<const SpecParams> params_;
};

// A position-dependent scale of the query ("attention temperature") that some models apply with
// RoPE: q is multiplied, in every channel of the head, by
//   t(p) = factor * (1 + beta * ln(1 + floor((p + shift) / length))).
// Llama 4 (attn_temperature_tuning, on its NoPE layers): beta = attn_scale, length = floor_scale,
// shift 1. Ministral 3 and Mistral 4 (rope_parameters.llama_4_scaling_beta, every layer): beta,
// length = original_max_position_embeddings, shift 0. beta 0 leaves the constant `factor`, e.g.
// DeepSeek's mscale^2 when an attention kernel's softmax scale cannot carry it.
struct ROPEKIT_API QueryScale {
  double factor = 1.0;
  double beta = 0.0;
  int64_t length = 1;  // > 0
  int64_t shift = 0;   // in [0, length]
  // Throws ropekit::Error naming the first invalid field (`what` prefixes it).
  void validate(const std::string& what = "query_scale") const;
  // t(position) in double, position >= 0.
  double at(int64_t position) const;
  // One line, e.g. "1 + 0.1 ln(1 + floor((p + 1) / 8192))".
  std::string describe() const;
  bool operator==(const QueryScale&) const = default;
};

ROPEKIT_API std::string to_string(Style style);
ROPEKIT_API Style style_from_string(const std::string& name);  // throws Error on an unknown name

}  // namespace ropekit
