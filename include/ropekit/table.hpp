#pragma once
// Layer 3: an immutable fp32 cos/sin table for positions [0, size()), the attention factor folded in.
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "ropekit/export.hpp"
#include "ropekit/spec.hpp"

namespace ropekit {

namespace detail {
struct TableData;
struct TableAccess;  // backends reach a table's data through it (src/table_data.hpp)
}

struct TableOptions {
  // false: angle = float32(p) * float32(inv_freq), rounded once as PyTorch computes it; cos/sin of
  //        that float angle evaluated in double. Matches what models were trained with.
  // true:  angle = p * inv_freq in double with full range reduction: fp32-accurate at p = 1e7.
  bool exact = false;
  // The sequence length the frequencies are chosen for (dynamic NTK: the base grows once it passes
  // original_max; LongRoPE: long factors once it passes original_max). 0: the original, unscaled
  // frequencies. Other schemes ignore it.
  int64_t seq_len = 0;
};

// A value: built once, never changed. Copies share the same rows (a copy costs one reference
// count), any number of threads may use one table at once, and growing or rescaling returns a new
// table while whoever holds the old one keeps it unchanged. Device copies (CUDA) belong to the
// table: made on first use on a device, freed with the last copy of the table.
class ROPEKIT_API RopeTable {
 public:
  // Rows for positions [0, positions); at most 2^31 positions (an allocation that fails is a
  // ropekit::Error naming the size).
  explicit RopeTable(RopeSpec spec, int64_t positions = 0, TableOptions options = {});

  const RopeSpec& spec() const;
  const TableOptions& options() const;
  int64_t size() const;   // positions covered by rows: [0, size)
  int64_t pairs() const;
  int64_t seq_len() const;  // the sequence length the frequencies were chosen for (options().seq_len)

  // Row p: pairs() cosines followed by pairs() sines, attention factor included.
  const float* row(int64_t position) const;
  std::span<const float> rows() const;

  const std::vector<double>& inv_freq() const;
  const std::vector<float>& inv_freq_f32() const;  // each rounded to float32
  double attention_factor() const;
  // Per-pair ln(zeta_i) / scale_base for xPos (empty without xPos).
  const std::vector<double>& xpos_log_zeta() const;

  // The same frequencies with rows for at least n positions (grows geometrically; the rows already
  // built are copied). Returns this table itself when it already covers n.
  RopeTable grown(int64_t n) const;
  // HF's rule before a forward over seq_len positions: frequencies for seq_len (dynamic NTK,
  // LongRoPE; see TableOptions::seq_len) and rows covering it. Returns this table itself when its
  // frequencies already are those and it covers seq_len.
  RopeTable for_seq_len(int64_t seq_len) const;

 private:
  friend struct detail::TableAccess;
  explicit RopeTable(std::shared_ptr<const detail::TableData> data) : data_(std::move(data)) {}
  std::shared_ptr<const detail::TableData> data_;
};

// The seq_len whose frequencies `spec` uses for a forward over seq_len positions, reduced to what
// changes them: original frequencies (0) unless the scheme depends on the length and seq_len
// passes original_max. Two lengths with the same key share their frequencies.
ROPEKIT_API int64_t frequency_seq_len(const RopeSpec& spec, int64_t seq_len);

}  // namespace ropekit
