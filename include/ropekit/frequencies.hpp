#pragma once
// Layer 2: pure functions of a spec. Everything in double; no tensors.
#include <cstdint>
#include <utility>
#include <vector>

#include "ropekit/export.hpp"
#include "ropekit/spec.hpp"

namespace ropekit {

// base^(-2i/dim) for i in [0, dim/2), with the exponent 2i/dim rounded to float32 first, as
// PyTorch's `torch.arange(0, dim, 2).float() / dim` does (models were trained with those values).
ROPEKIT_API std::vector<double> default_inv_freq(int64_t dim, double base);

// The inverse frequencies the spec rotates with, length rotary_dim/2. `seq_len` matters only for
// the length-dependent schemes: DynamicNtk (base grows once seq_len > original_max) and LongRope
// (long factors once seq_len > original_max). For Truncated this is theta*.
ROPEKIT_API std::vector<double> inv_freq(const RopeSpec& spec, int64_t seq_len = 0);

// The factor folded into cos and sin (YaRN / LongRoPE mscale; 1 otherwise).
ROPEKIT_API double attention_factor(const RopeSpec& spec);

// xPos per-pair base zeta_i (empty without xPos).
ROPEKIT_API std::vector<double> xpos_zeta(const RopeSpec& spec);

// --- Zeta / YaRN helpers, exactly as jquesnelle's YaRN and HF define them ---------------------

// dim * ln(max_position_embeddings / (2*pi*num_rotations)) / (2 * ln(base))
ROPEKIT_API double find_correction_dim(double num_rotations, double dim, double base, double max_position_embeddings);

// (max(floor(low), 0), min(ceil(high), dim - 1)); without truncate the floor/ceil are skipped.
std::pair<double, double> find_correction_range(double low_rot, double high_rot, double dim, double base,
                                                double max_position_embeddings, bool truncate = true);

// clamp((i - min) / (max - min), 0, 1) for i in [0, n); max += 0.001 when min == max.
ROPEKIT_API std::vector<double> linear_ramp_mask(double min, double max, int64_t n);

// 1 if scale <= 1, else 0.1 * mscale * ln(scale) + 1.
ROPEKIT_API double get_mscale(double scale, double mscale = 1.0);

}  // namespace ropekit
