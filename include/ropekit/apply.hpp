#pragma once
// Layer 5: rotate q and k (k optional, its own head count for GQA) in one call.
#include <cstdint>
#include <optional>

#include "ropekit/export.hpp"
#include "ropekit/spec.hpp"
#include "ropekit/table.hpp"
#include "ropekit/tensor_view.hpp"

namespace ropekit {

// Where each token sits.
struct Positions {
  enum class Kind { from_offset, per_sequence, token_ids, packed };
  Kind kind = Kind::from_offset;
  int64_t start = 0;       // from_offset: every sequence starts at `start`
  IndexView values;        // per_sequence: one offset per sequence; token_ids: one per token and axis; packed: optional offsets
  IndexView cu_seqlens;    // packed: B+1 increasing boundaries, cu[0] = 0, cu[B] = tokens
  int64_t axes = 1;        // token_ids: 1, or 3 for M-RoPE's (time, height, width)

  // Token s of every sequence is at start + s (prefill: 0; decode: the cache length).
  static Positions from_offset(int64_t start = 0) { return {Kind::from_offset, start, {}, {}, 1}; }
  // Token s of sequence b is at offsets[b] + s.
  static Positions per_sequence(IndexView offsets) { return {Kind::per_sequence, 0, offsets, {}, 1}; }
  // One id per token: B*S ids (b-major) for rank-4 views, T ids for rank 3. With 3 axes (an M-RoPE
  // spec, ropekit/spec.hpp MRope), axis-major as HF's position_ids (3, B, S) and vLLM's (3, T):
  // 3 B S ids, axis a of token (b, s) at a B S + b S + s.
  static Positions token_ids(IndexView ids, int64_t axes = 1) { return {Kind::token_ids, 0, ids, {}, axes}; }
  // Rank-3 (T, H, D) views holding several sequences back to back: token t of sequence b is at
  // t - cu_seqlens[b] + offsets[b] (offsets optional: 0).
  static Positions packed(IndexView cu_seqlens, IndexView offsets = {}) {
    return {Kind::packed, 0, offsets, cu_seqlens, 1};
  }
};

enum class Direction {
  forward,   // y = a * s * R(theta) x            (a: attention factor, s: xPos scale)
  backward,  // vector-Jacobian product of forward: g_x = a * s * R(-theta) g_y
  inverse,   // undoes forward: x = R(-theta) y / (a * s)
};

struct ApplyOptions {
  Direction direction = Direction::forward;
  // xPos exponent is (position - xpos_center) / scale_base. Centering cancels in q.k; the Zeta/xPos
  // modules center on the middle of the sequence.
  double xpos_center = 0.0;
  // Compute cos/sin in the kernel from positions and the table's inv_freq (accurate, range-reduced;
  // honours TableOptions::exact) instead of reading table rows. Positions at or past the table's
  // size are computed in the kernel either way.
  bool compute_sincos = false;
  // CPU threads: 0 uses every core; small calls run on the calling thread regardless.
  int num_threads = 0;
  // CUDA stream (cudaStream_t) for device views; ignored on the CPU. A call never waits for the GPU
  // once its device and table have been used: the first call on a device and the first with a
  // table there allocate and upload (make one such call before capturing a CUDA graph). A table
  // used by a captured graph must outlive the graph. Device-resident positions (offsets, ids,
  // cu_seqlens) are checked by the kernel: tokens without a valid position are left unwritten and
  // the next call on that device, or ropekit::cuda_check_errors() (ropekit/cuda.hpp), throws the
  // Error naming the first one. See src/cuda/README.md.
  void* stream = nullptr;
  // q (every channel of its heads, rotated or not) times query_scale->at(position), fused into the
  // rotation; k is not scaled. Backward multiplies the gradient by the same factor, inverse divides.
  std::optional<QueryScale> query_scale;
};

struct RopeTensors {
  TensorView q;
  std::optional<TensorView> k;
  std::optional<TensorView> q_out;  // absent: rotate q in place
  std::optional<TensorView> k_out;  // absent: rotate k in place
};

// Rotate with the frequencies of `table`: positions below table.size() read its rows, the others
// are computed in the kernel from the same frequencies. The table is never changed.
// All arguments are checked before any output is written; an Error leaves outputs untouched.
ROPEKIT_API void apply_rope(const RopeTensors& tensors, const Positions& positions, const RopeTable& table,
                const ApplyOptions& options = {});

// Without a table: the frequencies for a forward over (largest position + 1) positions (the
// sequence length dynamic NTK and LongRoPE see, as HF), cos/sin computed in the kernel.
ROPEKIT_API void apply_rope(const RopeTensors& tensors, const Positions& positions, const RopeSpec& spec,
                const ApplyOptions& options = {});

// A layer without RoPE whose query still has a position-dependent scale (Llama 4's NoPE layers):
// q (q_out absent: in place) times scale.at(position), every channel, no rotation. options:
// direction (backward multiplies as forward, inverse divides), num_threads and stream; the others
// must be left at their defaults. Checked as apply_rope; an Error leaves q untouched.
ROPEKIT_API void apply_query_scale(const TensorView& q, const Positions& positions, const QueryScale& scale,
                                   const ApplyOptions& options = {}, const std::optional<TensorView>& q_out = {});

// The largest position the call would read plus one (0 for no tokens). Checks positions first.
ROPEKIT_API int64_t required_table_size(const RopeTensors& tensors, const Positions& positions);

}  // namespace ropekit
