#include "ropekit/cache.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "check.hpp"
#include "coefficients.hpp"
#include "ropekit/frequencies.hpp"

namespace ropekit {

namespace {
// A table past this many positions is a mistake, not a model (2^31 positions).
constexpr int64_t kMaxPositions = int64_t{1} << 31;

bool length_dependent(const RopeSpec& spec) {
  return std::holds_alternative<scaling::DynamicNtk>(spec.scaling()) ||
         std::holds_alternative<scaling::LongRope>(spec.scaling());
}

int64_t original_max(const RopeSpec& spec) {
  if (const auto* d = std::get_if<scaling::DynamicNtk>(&spec.scaling())) return d->original_max;
  if (const auto* l = std::get_if<scaling::LongRope>(&spec.scaling())) return l->original_max;
  return 0;
}
}  // namespace

CosSinCache::CosSinCache(RopeSpec spec, int64_t positions, CacheOptions options)
    : spec_(std::move(spec)), options_(options) {
  attention_factor_ = ropekit::attention_factor(spec_);
  if (spec_.xpos()) {
    for (double zeta : xpos_zeta(spec_)) xpos_log_zeta_.push_back(std::log(zeta) / spec_.xpos()->scale_base);
  }
  set_frequencies(original_max(spec_));
  ensure(positions);
}

void CosSinCache::set_frequencies(int64_t seq_len) {
  inv_freq_ = ropekit::inv_freq(spec_, seq_len);
  inv_freq_f32_.assign(inv_freq_.begin(), inv_freq_.end());
  for (size_t i = 0; i < inv_freq_.size(); ++i) inv_freq_f32_[i] = static_cast<float>(inv_freq_[i]);
  scaled_for_ = seq_len;
}

void CosSinCache::fill_rows(int64_t begin, int64_t end) {
  const int64_t n = pairs();
  for (int64_t p = begin; p < end; ++p) {
    float* cos_row = table_.data() + p * 2 * n;
    float* sin_row = cos_row + n;
    for (int64_t i = 0; i < n; ++i) {
      const auto k = static_cast<size_t>(i);
      const double angle = detail::rope_angle(p, inv_freq_[k], inv_freq_f32_[k], options_.exact);
      cos_row[i] = static_cast<float>(std::cos(angle) * attention_factor_);
      sin_row[i] = static_cast<float>(std::sin(angle) * attention_factor_);
    }
  }
}

void CosSinCache::ensure(int64_t n) {
  if (n < 0 || n > kMaxPositions) detail::fail("positions", detail::cat("0 <= n <= ", kMaxPositions), n);
  if (n <= size_) return;
  const int64_t grown = std::min(std::max(n, size_ + size_ / 2), kMaxPositions);
  table_.resize(static_cast<size_t>(grown * 2 * pairs()));
  fill_rows(size_, grown);
  size_ = grown;
  ++generation_;
}

std::shared_ptr<const CosSinCache> CosSinCache::snapshot() const { return std::make_shared<const CosSinCache>(*this); }

void CosSinCache::prepare_for_seq_len(int64_t seq_len) {
  if (seq_len < 0) detail::fail("seq_len", ">= 0", seq_len);
  if (length_dependent(spec_)) {
    const int64_t original = original_max(spec_);
    int64_t target = scaled_for_;
    if (std::holds_alternative<scaling::DynamicNtk>(spec_.scaling())) {
      if (seq_len > scaled_for_) {
        target = seq_len;
      } else if (seq_len < original && scaled_for_ > original) {
        target = original;
      }
    } else {
      // LongRoPE only distinguishes "longer than original_max" from "not".
      target = seq_len > original ? original + 1 : original;
    }
    if (target != scaled_for_) {
      set_frequencies(target);
      fill_rows(0, size_);
      ++generation_;
    }
  }
  ensure(seq_len);
}

}  // namespace ropekit
