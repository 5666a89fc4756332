#pragma once
// Layer 3: fp32 cos/sin for positions [0, size()), the attention factor folded in.
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "ropekit/spec.hpp"

namespace ropekit {

struct CacheOptions {
  // false: angle = float32(p) * float32(inv_freq), rounded once as PyTorch computes it; cos/sin of
  //        that float angle evaluated in double. Matches what models were trained with.
  // true:  angle = p * inv_freq in double with full range reduction: fp32-accurate at p = 1e7.
  bool exact = false;
};

// Threads. Const methods, and apply_rope with a const table, are safe from any number of threads at
// once. ensure() and prepare_for_seq_len() change the table (growing reallocates: pointers from row()
// are invalidated): while one thread calls them, no other thread may touch that same object.
// To grow a table while other threads keep applying, give each reader its own handle: a
// CosSinCache is copyable and a copy is independent of the original, and snapshot() hands out an
// immutable shared copy. The growing thread calls snapshot() after growing and publishes the
// pointer (under a mutex, or std::atomic<std::shared_ptr>); readers apply with the snapshot they
// hold, which stays valid and unchanged whatever the original does later.
class CosSinCache {
 public:
  explicit CosSinCache(RopeSpec spec, int64_t positions = 0, CacheOptions options = {});

  const RopeSpec& spec() const { return spec_; }
  const CacheOptions& options() const { return options_; }
  int64_t size() const { return size_; }        // positions covered: [0, size)
  int64_t pairs() const { return spec_.pairs(); }

  // Row p: pairs() cosines followed by pairs() sines, attention factor included.
  const float* row(int64_t position) const { return table_.data() + position * 2 * pairs(); }
  std::span<const float> table() const { return {table_.data(), static_cast<size_t>(size_ * 2 * pairs())}; }

  // Frequencies in use now (dynamic NTK / LongRoPE depend on the last prepare_for_seq_len).
  const std::vector<double>& inv_freq() const { return inv_freq_; }
  const std::vector<float>& inv_freq_f32() const { return inv_freq_f32_; }  // each rounded to float32
  double attention_factor() const { return attention_factor_; }
  // Per-pair ln(zeta_i) / scale_base for xPos (empty without xPos).
  const std::vector<double>& xpos_log_zeta() const { return xpos_log_zeta_; }

  // Grow to cover at least n positions (geometric growth). Rows already built keep their values.
  void ensure(int64_t n);

  // Follow HF's rule for the length-dependent schemes before a forward over seq_len positions:
  //  - DynamicNtk: if seq_len exceeds the length the table was scaled for, rescale for seq_len; if
  //    seq_len < original_max and the table was rescaled, reset to the original frequencies.
  //  - LongRope: long factors when seq_len > original_max, short ones otherwise.
  // Then ensure(seq_len). Other schemes: just ensure(seq_len).
  void prepare_for_seq_len(int64_t seq_len);

  // An immutable copy of the table as it is now (see "Threads" above). Call it from the thread that
  // grows the table, or while no thread grows it.
  std::shared_ptr<const CosSinCache> snapshot() const;

  // The sequence length the current frequencies were chosen for (dynamic NTK / LongRoPE).
  int64_t scaled_for() const { return scaled_for_; }
  // Bumped whenever existing rows change or move (for device copies keyed on it).
  uint64_t generation() const { return generation_; }

 private:
  void set_frequencies(int64_t seq_len);
  void fill_rows(int64_t begin, int64_t end);

  RopeSpec spec_;
  CacheOptions options_;
  std::vector<double> inv_freq_;
  std::vector<float> inv_freq_f32_;
  double attention_factor_ = 1.0;
  std::vector<double> xpos_log_zeta_;
  std::vector<float> table_;
  int64_t size_ = 0;
  int64_t scaled_for_ = 0;
  uint64_t generation_ = 0;
};

}  // namespace ropekit
