// Runs the CUDA kernel's per-item body (rope_item) on the CPU, item by item, with the launch
// setup apply_cuda uses (kernel_args, set_table, configure_launch), and compares with the CPU
// backend. This checks the kernel's indexing (chunks, head groups, q/k split, pass-through tail,
// vector and element-wise paths, positions) on machines without a GPU; it does not replace the
// GPU tests (device code generation, memory, streams).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend.hpp"
#include "cuda/kernel_args.hpp"
#include "half_float.hpp"
#include "ropekit/ropekit.hpp"

namespace ropekit::detail::cuda {
namespace {

size_t elem_size(DType t) { return t == DType::f32 ? 4 : 2; }

double get(const std::vector<unsigned char>& buf, DType t, size_t i) {
  if (t == DType::f32) {
    float f;
    std::memcpy(&f, buf.data() + 4 * i, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, buf.data() + 2 * i, 2);
  return t == DType::f16 ? half_to_float(h) : bf16_to_float(h);
}

struct EmuCase {
  DType dtype;
  Style style;
  Direction direction;
  bool in_place;
  int64_t head_dim, rotary_dim;
  int64_t forced_hpt;
  bool vector;
  int positions;  // 0 offset, 1 ids int32, 2 packed with offsets, 3 per-sequence offsets
  bool xpos, sincos;
};

// Sets up the launch as apply_cuda does, then runs every item of the grid in order.
template <typename T>
void emulate(KernelArgs& a, const RopeParams& p, bool vector, int64_t forced_hpt) {
  if (vector) {
    ASSERT_TRUE(vector_ok(p, kVectorPairs<T>)) << "case meant for the vector path";
    (void)configure_launch<kVectorPairs<T>>(a, p, 132, 2048, forced_hpt);
    for (int64_t item = 0; item < a.items; ++item) rope_item<T, kVectorPairs<T>>(a, item);
  } else {
    ASSERT_FALSE(vector_ok(p, kVectorPairs<T>)) << "case meant for the element-wise path";
    (void)configure_launch<1>(a, p, 132, 2048, forced_hpt);
    for (int64_t item = 0; item < a.items; ++item) rope_item<T, 1>(a, item);
  }
  ASSERT_EQ(a.heads_per_thread, forced_hpt);
}

void run(const EmuCase& c, uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "dtype=" << static_cast<int>(c.dtype) << " style=" << static_cast<int>(c.style)
                                    << " dir=" << static_cast<int>(c.direction) << " in_place=" << c.in_place
                                    << " D=" << c.head_dim << " R=" << c.rotary_dim << " hpt=" << c.forced_hpt
                                    << " vector=" << c.vector << " positions=" << c.positions << " xpos=" << c.xpos
                                    << " sincos=" << c.sincos << " seed=" << seed);
  std::mt19937_64 rng(seed);
  const int64_t B = c.positions == 2 ? 1 : 2, S = c.positions == 2 ? 11 : 5, Hq = 5, Hk = 3, D = c.head_dim;
  SpecParams sp;
  sp.head_dim = D;
  sp.rotary_dim = c.rotary_dim;
  sp.style = c.style;
  if (c.xpos) sp.xpos = Xpos{};
  const RopeSpec spec(sp);
  const RopeTable table(spec, 64);

  const size_t es = elem_size(c.dtype);
  auto make = [&](int64_t H) {
    std::vector<unsigned char> v(static_cast<size_t>(B * S * H * D) * es);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (size_t i = 0; i < v.size() / es; ++i) {
      const float x = u(rng);
      if (c.dtype == DType::f32) std::memcpy(v.data() + 4 * i, &x, 4);
      else {
        const uint16_t h = c.dtype == DType::f16 ? float_to_half(x) : float_to_bf16(x);
        std::memcpy(v.data() + 2 * i, &h, 2);
      }
    }
    return v;
  };
  const auto q_in = make(Hq), k_in = make(Hk);
  std::vector<unsigned char> q_cpu(q_in.size(), 0xff), k_cpu(k_in.size(), 0xff), q_emu(q_in.size(), 0xff),
      k_emu(k_in.size(), 0xff);
  if (c.in_place) {
    q_cpu = q_emu = q_in;
    k_cpu = k_emu = k_in;
  }

  std::vector<int32_t> ids;
  std::vector<int64_t> cu = {0, 4, 4, 11}, offsets = {3, 0, 9};
  RopeParams p;
  p.dtype = c.dtype;
  p.style = c.style;
  p.direction = c.direction;
  p.batch = B;
  p.seq = S;
  p.head_dim = D;
  p.rotary_dim = c.rotary_dim;
  p.pairs = c.rotary_dim / 2;
  p.has_k = true;
  use_table(p, TableAccess::data(table), c.sincos);
  p.has_xpos = c.xpos;
  p.xpos_center = c.xpos ? 7.0 : 0.0;
  switch (c.positions) {
    case 0: p.positions = Positions::from_offset(6); break;
    case 1:
      for (int64_t t = 0; t < B * S; ++t) ids.push_back(static_cast<int32_t>((t * 37) % 60));
      p.positions = Positions::token_ids(IndexView(ids.data(), B * S));
      break;
    case 2:
      p.positions = Positions::packed(IndexView(cu.data(), 4), IndexView(offsets.data(), 3));
      p.num_sequences = 3;
      break;
    default: p.positions = Positions::per_sequence(IndexView(offsets.data(), B)); break;
  }
  auto operand = [&](const std::vector<unsigned char>& in, std::vector<unsigned char>& out, int64_t H, float sign) {
    Operand op;
    op.in = c.in_place ? static_cast<const void*>(out.data()) : in.data();
    op.out = out.data();
    op.heads = H;
    op.in_stride[0] = op.out_stride[0] = B == 1 ? 0 : S * H * D;
    op.in_stride[1] = op.out_stride[1] = H * D;
    op.in_stride[2] = op.out_stride[2] = D;
    op.in_place = c.in_place;
    op.xpos_sign = sign;
    return op;
  };
  RopeParams cpu = p;
  cpu.q = operand(q_in, q_cpu, Hq, 1.0f);
  cpu.k = operand(k_in, k_cpu, Hk, -1.0f);
  apply_cpu_scalar(cpu);  // the plain loop: same arithmetic order as the kernel body

  RopeParams emu = p;
  emu.q = operand(q_in, q_emu, Hq, 1.0f);
  emu.k = operand(k_in, k_emu, Hk, -1.0f);
  DeviceTable host_table;
  host_table.rows = table.rows().data();
  host_table.size = table.size();
  host_table.inv_freq = table.inv_freq().data();
  host_table.inv_freq_f32 = table.inv_freq_f32().data();
  host_table.xpos_log_zeta = c.xpos ? table.xpos_log_zeta().data() : nullptr;
  KernelArgs a = kernel_args(emu);
  set_table(a, emu, host_table);
  switch (c.dtype) {
    case DType::f32: emulate<F32>(a, emu, c.vector, c.forced_hpt); break;
    case DType::f16: emulate<F16>(a, emu, c.vector, c.forced_hpt); break;
    case DType::bf16: emulate<BF16>(a, emu, c.vector, c.forced_hpt); break;
  }
  if (::testing::Test::HasFatalFailure()) return;

  const double eps = c.dtype == DType::f32 ? std::ldexp(1.0, -23) : c.dtype == DType::f16 ? std::ldexp(1.0, -10) : std::ldexp(1.0, -7);
  int failures = 0;
  auto compare = [&](const std::vector<unsigned char>& want, const std::vector<unsigned char>& got, const char* name) {
    for (size_t i = 0; i < want.size() / es; ++i) {
      const double w = get(want, c.dtype, i), g = get(got, c.dtype, i);
      if (std::isnan(w) || std::isnan(g) || std::fabs(w - g) > eps * (std::fabs(w) + 1e-3)) {
        if (++failures <= 5) ADD_FAILURE() << name << "[" << i << "]: emulated kernel " << g << ", cpu " << w;
      }
    }
  };
  compare(q_cpu, q_emu, "q");
  compare(k_cpu, k_emu, "k");
  EXPECT_EQ(failures, 0);
}

TEST(CudaKernelEmulation, MatchesCpuBackend) {
  std::random_device rd;
  int index = 0;
  for (DType t : {DType::f32, DType::f16, DType::bf16})
    for (Style st : {Style::half, Style::interleaved})
      for (bool in_place : {true, false})
        for (bool partial : {false, true})
          for (int64_t hpt : {1, 2, 3, 8})
            for (bool vector : {true, false}) {
              EmuCase c;
              c.dtype = t;
              c.style = st;
              c.in_place = in_place;
              // Vector path: D = 80 with 40 (or 16) pairs; element-wise: 35 (or 9) pairs.
              c.head_dim = vector ? 80 : 70;
              c.rotary_dim = vector ? (partial ? 32 : 80) : (partial ? 18 : 70);
              c.forced_hpt = hpt;
              c.vector = vector;
              c.direction = static_cast<Direction>(index % 3);
              c.positions = index % 4;
              c.xpos = index % 5 == 1;
              c.sincos = index % 3 == 2;
              ++index;
              run(c, (static_cast<uint64_t>(rd()) << 32) ^ rd());
              if (HasFailure()) return;
            }
}

}  // namespace
}  // namespace ropekit::detail::cuda
