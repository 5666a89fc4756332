#pragma once
// The one table of apply cases every backend runs (scalar loop, each Highway target, the CUDA kernel
// emulated on the CPU, the CUDA device) and `ropekit verify` runs too. A case fixes every option of
// a call; its shapes, inputs and positions come from the case's own seed, so any case replays.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ropekit/apply.hpp"
#include "ropekit/spec.hpp"

namespace ropekit::cases {

// bshd / bhsd: rank-4 batch x seq (bhsd: heads before seq); padded: bshd with a gap after each head
// row; thd: rank-3 tokens (packed sequences when the positions say so).
enum class Layout { bshd, bhsd, padded, thd };
enum class PositionMode { offset, per_sequence, ids32, ids64, packed, packed_offsets };
// Where cos/sin come from: table rows for every position, rows for only some (the others computed
// in the kernel), or computed for all (compute_sincos; exact: angles in double).
enum class CosSin { rows, past_rows, compute, compute_exact };
// Scaling families of ropekit/spec.hpp (fixed: the spec a caller gave).
// Multi-axis maps of ropekit/spec.hpp: M-RoPE (chunked or interleaved sections) and axial 2-D.
enum class AxisMap { none, mrope_chunked, mrope_interleaved, axial, axial_odd };
enum class ScalingFamily { none, linear, ntk_aware, dynamic_ntk, yarn, llama3, longrope, truncated, proportional, fixed };

struct Case {
  DType dtype = DType::f32;
  Style style = Style::half;
  Layout layout = Layout::bshd;
  Layout out_layout = Layout::bshd;  // out of place: the outputs' layout (thd with thd)
  PositionMode positions = PositionMode::offset;
  ScalingFamily family = ScalingFamily::none;
  bool xpos = false;
  Direction direction = Direction::forward;
  bool in_place = true;
  bool partial_rotary = false;
  CosSin cos_sin = CosSin::rows;
  bool exact_rows = false;  // rows / past_rows: a table of double-precision angles (TableOptions::exact)
  bool far_positions = false;  // positions from far_start (no xPos there: its scales would overflow)
  int64_t far_start = 1000000;
  std::optional<QueryScale> query_scale;  // q times t(position) (ApplyOptions::query_scale)
  // The spec's multi-axis map (M-RoPE sections drawn); ids positions then carry its axes (3 or 2),
  // the other position modes one.
  AxisMap axis_map = AxisMap::none;

  SpecParams spec;  // head_dim, rotary_dim, style, scaling and xPos as above
  int64_t batch = 2, seq = 5, q_heads = 3, k_heads = 2;  // thd: batch 1, seq = tokens; k_heads 0: q only
  double xpos_center_shift = 0.0;  // xPos: the center this far from the middle of the positions
  int num_threads = 1;  // > 1 or 0 (every core): the CPU backends split even these small calls
  // >= 0: this many elements after every head row of q, k and the outputs (picks a backend's access
  // width); -1: none, or drawn for the padded layout (and for some thd cases).
  int64_t row_padding = -1;
  uint64_t seed = 0;  // inputs and positions

  std::string describe() const;
};

const char* name(Layout l);
const char* name(PositionMode m);
const char* name(CosSin c);
const char* name(ScalingFamily f);
const char* name(AxisMap m);
const char* name(Direction d);

struct CaseTableOptions {
  uint64_t seed = 0;     // shapes and inputs of every case, and the random draws
  int random_draws = 0;  // extra cases, every dimension drawn at random
  // Given: every case uses this spec (head_dim, rotary_dim, scaling, xPos) with both styles; the
  // scaling, xPos and partial-rotary dimensions drop out. Empty head_dim: the families above.
  SpecParams spec{};
  bool f64 = true;  // include f64 cases (the CPU backends run them)
  int64_t tokens = 0;  // > 0: every case has this many tokens per sequence (thd: in all); else drawn
};

// The largest shapes a case draws (callers bound their memory with them).
inline constexpr int64_t kMaxCaseBatch = 3, kMaxCaseQHeads = 4, kMaxCaseKHeads = 3;

// A deterministic covering subset: every value of each dimension meets every value of every other
// dimension in at least one case (where the two can meet), first among the f32/f16/bf16 cases alone
// (so backends without f64 still see every pair), then with f64. Then `random_draws` random cases.
std::vector<Case> case_table(const CaseTableOptions& options);

// The case with its spec, shapes and seed filled in from `seed` (the table does this for each case);
// `given` and `tokens` as in CaseTableOptions.
Case complete(Case c, uint64_t seed, const SpecParams& given = {}, int64_t tokens = 0);

// ROPEKIT_TEST_SEED when set (replays a run), else a fresh random seed.
uint64_t test_seed();
std::string replay_note(uint64_t seed);

}  // namespace ropekit::cases
