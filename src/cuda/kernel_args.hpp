#pragma once
// From RopeParams to the kernel's arguments and launch shape: no CUDA runtime calls here, so the
// same code drives the real launch and the CPU emulation test of the kernel body.
#include <cstdint>

#include "../backend.hpp"
#include "../check.hpp"
#include "device_table.hpp"
#include "launch_config.hpp"
#include "rope_kernel.cuh"

namespace ropekit::detail::cuda {

inline KernelOperand kernel_operand(const Operand& op) {
  KernelOperand k;
  k.in = op.in;
  k.out = op.out;
  for (int d = 0; d < 3; ++d) {
    k.in_stride[d] = op.in_stride[d];
    k.out_stride[d] = op.out_stride[d];
  }
  k.heads = op.heads;
  k.xpos_sign = op.xpos_sign;
  return k;
}

inline PositionKind position_kind(Positions::Kind kind) {
  switch (kind) {
    case Positions::Kind::offset: return PositionKind::offset;
    case Positions::Kind::offsets: return PositionKind::offsets;
    case Positions::Kind::ids: return PositionKind::ids;
    case Positions::Kind::packed: return PositionKind::packed;
  }
  fail("positions.kind", "offset, offsets, ids or packed", static_cast<int>(kind));
}

// Operands, shape, style, direction and positions (the table is set by set_table).
inline KernelArgs kernel_args(const RopeParams& p) {
  KernelArgs a;
  a.op[0] = kernel_operand(p.q);
  if (p.has_k) a.op[1] = kernel_operand(p.k);
  a.seq = p.seq;
  a.head_dim = p.head_dim;
  a.rotary_dim = p.rotary_dim;
  a.pairs = p.pairs;
  a.half_style = p.style == Style::half;
  a.direction = p.direction;
  const Positions& pos = p.positions;
  a.kind = position_kind(pos.kind);
  a.start = pos.start;
  if (!pos.values.empty()) {
    a.values = pos.values.data;
    a.values_i64 = pos.values.type == IndexType::i64;
  }
  if (a.kind == PositionKind::packed) {
    a.cu_seqlens = pos.cu_seqlens.data;
    a.cu_i64 = pos.cu_seqlens.type == IndexType::i64;
    a.num_sequences = p.num_sequences;
  }
  return a;
}

inline void set_table(KernelArgs& a, const RopeParams& p, const DeviceTable& table) {
  a.rows = table.rows;
  a.rows_count = table.rows ? p.rows_count : 0;
  a.inv_freq = table.inv_freq;
  a.inv_freq_f32 = table.inv_freq_f32;
  a.exact = p.exact;
  a.attention = p.attention_factor;
  a.inv_attention_sq = static_cast<float>(1.0 / (p.attention_factor * p.attention_factor));
  a.xpos_log_zeta = p.has_xpos ? table.xpos_log_zeta : nullptr;
  a.xpos_center = p.xpos_center;
}

// Stored values per 16-byte vector: the pairs per chunk of the vectorised kernel.
template <typename T>
constexpr int kVectorPairs = static_cast<int>(16 / sizeof(typename T::Storage));

inline bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

// 16-byte accesses need whole vectors per half/row chunk, 16-byte aligned bases and strides that
// keep every row aligned; otherwise the element-wise instantiation (P = 1) runs.
inline bool vector_ok(const RopeParams& p, int pairs_per_vector) {
  if (p.pairs % pairs_per_vector != 0) return false;
  auto op_ok = [&](const Operand& op) {
    if (!aligned16(op.in) || !aligned16(op.out)) return false;
    for (int d = 0; d < 3; ++d)
      if (op.in_stride[d] % pairs_per_vector != 0 || op.out_stride[d] % pairs_per_vector != 0) return false;
    return true;
  };
  return op_ok(p.q) && (!p.has_k || op_ok(p.k));
}

// Chooses the work split for P pairs per chunk and writes it into `a`.
template <int P>
LaunchConfig configure_launch(KernelArgs& a, const RopeParams& p, int multiprocessors, int threads_per_multiprocessor,
                              int64_t forced_heads_per_thread) {
  const bool tail = p.rotary_dim < p.head_dim;
  a.op[0].copy_tail = tail && !p.q.in_place;
  a.op[1].copy_tail = p.has_k && tail && !p.k.in_place;
  LaunchShape shape;
  shape.tokens = p.batch * p.seq;
  shape.rotary_chunks = p.pairs / P;
  shape.pass_chunks = (a.op[0].copy_tail || a.op[1].copy_tail) ? ceil_div(p.head_dim - p.rotary_dim, 2 * P) : 0;
  shape.q_heads = p.q.heads;
  shape.k_heads = p.has_k ? p.k.heads : 0;
  shape.multiprocessors = multiprocessors;
  shape.max_threads_per_multiprocessor = threads_per_multiprocessor;
  shape.forced_heads_per_thread = forced_heads_per_thread;
  const LaunchConfig config = make_launch_config(shape);
  a.rotary_chunks = shape.rotary_chunks;
  a.chunks_per_row = config.chunks_per_row;
  a.heads_per_thread = config.heads_per_thread;
  a.items = config.items;
  a.op[0].groups = config.q_groups;
  a.op[1].groups = config.k_groups;
  return config;
}

}  // namespace ropekit::detail::cuda
