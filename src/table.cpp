#include "ropekit/table.hpp"

#include <algorithm>
#include <cmath>
#include <new>

#include "check.hpp"
#include "rope_math.hpp"
#include "visit.hpp"
#include "ropekit/frequencies.hpp"
#include "table_data.hpp"

namespace ropekit {

namespace {
// A table past this many positions is a mistake, not a model (2^31 positions); positions beyond a
// table's rows are computed in the kernel instead.
constexpr int64_t kMaxPositions = int64_t{1} << 31;

void check_positions(int64_t n, const char* what) {
  if (n < 0 || n > kMaxPositions) detail::fail(what, detail::cat("0 <= n <= ", kMaxPositions, " (2^31)"), n);
}

std::shared_ptr<detail::TableData> frequencies(const RopeSpec& spec, TableOptions options) {
  if (options.seq_len < 0) detail::fail("options.seq_len", ">= 0", options.seq_len);
  options.seq_len = frequency_seq_len(spec, options.seq_len);
  auto d = std::make_shared<detail::TableData>(spec);
  d->options = options;
  d->inv_freq = ropekit::inv_freq(spec, options.seq_len);
  d->inv_freq_f32.resize(d->inv_freq.size());
  for (size_t i = 0; i < d->inv_freq.size(); ++i) d->inv_freq_f32[i] = static_cast<float>(d->inv_freq[i]);
  d->attention_factor = ropekit::attention_factor(spec);
  if (spec.xpos()) {
    for (double zeta : xpos_zeta(spec)) d->xpos_log_zeta.push_back(std::log(zeta) / spec.xpos()->scale_base);
  }
  return d;
}

// Rows [begin, end) of d, after the rows vector was sized for end.
void fill_rows(detail::TableData& d, int64_t begin, int64_t end) {
  const int64_t n = d.spec.pairs();
  for (int64_t p = begin; p < end; ++p) {
    float* cos_row = d.rows.data() + p * 2 * n;
    float* sin_row = cos_row + n;
    for (int64_t i = 0; i < n; ++i) {
      const auto k = static_cast<size_t>(i);
      detail::scaled_cos_sin(detail::rope_angle(p, d.inv_freq[k], d.inv_freq_f32[k], d.options.exact),
                             d.attention_factor, cos_row[i], sin_row[i]);
    }
  }
}

// Tables of 2^40 bytes (1 TiB) or more are refused before allocating; smaller ones that do not fit
// in memory fail in the allocator. Both are an Error naming the size.
constexpr size_t kMaxTableBytes = size_t{1} << 40;

void allocate_rows(detail::TableData& d, int64_t positions) {
  const auto floats = static_cast<size_t>(positions) * 2 * static_cast<size_t>(d.spec.pairs());
  const auto too_big = [&] {
    detail::fail("positions", detail::cat("a table that fits in memory (", floats * sizeof(float), " bytes for ",
                                          positions, " positions x ", d.spec.pairs(), " pairs)"),
                 positions);
  };
  if (floats * sizeof(float) >= kMaxTableBytes) too_big();
  try {
    d.rows.resize(floats);
  } catch (const std::bad_alloc&) {
    too_big();
  }
  d.size = positions;
}

}  // namespace

int64_t frequency_seq_len(const RopeSpec& spec, int64_t seq_len) {
  using namespace scaling;
  return std::visit(
      detail::Overloaded{
          [&](const DynamicNtk& d) { return seq_len > d.original_max ? seq_len : int64_t{0}; },
          // LongRoPE only distinguishes "longer than original_max" from "not".
          [&](const LongRope& l) { return seq_len > l.original_max ? l.original_max + 1 : int64_t{0}; },
          [](const detail::one_of<None, Linear, NtkAware, Yarn, Llama3, Truncated, Proportional> auto&) { return int64_t{0}; },
      },
      spec.scaling());
}

RopeTable::RopeTable(RopeSpec spec, int64_t positions, TableOptions options) {
  check_positions(positions, "positions");
  auto d = frequencies(spec, options);
  allocate_rows(*d, positions);
  fill_rows(*d, 0, positions);
  data_ = std::move(d);
}

const RopeSpec& RopeTable::spec() const { return data_->spec; }
const TableOptions& RopeTable::options() const { return data_->options; }
int64_t RopeTable::size() const { return data_->size; }
int64_t RopeTable::pairs() const { return data_->spec.pairs(); }
int64_t RopeTable::seq_len() const { return data_->options.seq_len; }
const float* RopeTable::row(int64_t position) const { return data_->rows.data() + position * 2 * pairs(); }
std::span<const float> RopeTable::rows() const { return {data_->rows.data(), data_->rows.size()}; }
const std::vector<double>& RopeTable::inv_freq() const { return data_->inv_freq; }
const std::vector<float>& RopeTable::inv_freq_f32() const { return data_->inv_freq_f32; }
double RopeTable::attention_factor() const { return data_->attention_factor; }
const std::vector<double>& RopeTable::xpos_log_zeta() const { return data_->xpos_log_zeta; }

RopeTable RopeTable::grown(int64_t n) const {
  check_positions(n, "n");
  if (n <= size()) return *this;
  const int64_t target = std::min(std::max(n, size() + size() / 2), kMaxPositions);
  auto d = frequencies(spec(), options());
  allocate_rows(*d, target);
  std::copy(data_->rows.begin(), data_->rows.end(), d->rows.begin());
  fill_rows(*d, size(), target);
  return RopeTable(std::move(d));
}

RopeTable RopeTable::for_seq_len(int64_t seq_len) const {
  check_positions(seq_len, "seq_len");
  if (frequency_seq_len(spec(), seq_len) == this->seq_len()) return grown(seq_len);
  return RopeTable(spec(), seq_len, TableOptions{options().exact, seq_len});
}

}  // namespace ropekit
