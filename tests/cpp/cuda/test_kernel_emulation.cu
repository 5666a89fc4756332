// Runs the CUDA kernel's code on the CPU: every block and thread of the launch grid apply_cuda
// would use (kernel_args, set_table, choose_kernel, configure_launch, cap_grid), through the same
// grid loop (for_each_item), position decoding (token_position, check_cu_seqlens) and item body
// (rope_item). The shared case table (src/cases) runs on it against the float64 reference and the
// scalar loop (CaseTable). The EmuCase tests compare with the scalar loop and cover what the table
// leaves to its draws: every kernel specialisation (each dtype, style, access width, rows / mixed
// cos/sin, xPos mode), the caller's rows of rotary_embedding, apply_query_scale without pairs and
// the reports of invalid device-resident positions, on machines without a GPU. It does not replace
// the GPU tests (device code generation, memory, streams).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <span>
#include <stdexcept>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "backend.hpp"
#include "case_test_util.hpp"
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

// 16-byte aligned storage (vector paths need aligned bases).
struct Buffer {
  std::vector<uint64_t> words;
  size_t bytes = 0;
  explicit Buffer(size_t n = 0) : words((n + 15) / 8 + 2), bytes(n) {}
  unsigned char* data() { return reinterpret_cast<unsigned char*>(words.data()); }
  const unsigned char* data() const { return reinterpret_cast<const unsigned char*>(words.data()); }
  std::vector<unsigned char> copy() const { return {data(), data() + bytes}; }
};

enum class Pos { offset, ids, offsets, packed };

struct EmuCase {
  DType dtype = DType::bf16;
  Style style = Style::half;
  Direction direction = Direction::forward;
  bool in_place = true;
  int64_t head_dim = 80, rotary_dim = 80;
  int64_t pad = 0;           // elements between head rows: picks the access width
  int64_t forced_hpt = 0;    // 0: automatic
  Pos positions = Pos::offset;
  bool beyond_rows = false;  // some positions at or past the table's rows
  bool xpos = false;
  bool sincos = false;       // compute_sincos: no rows at all
  int64_t max_blocks = 3;    // grid cap: the grid-stride loops run several times
  bool attention = false;    // YaRN: attention factor != 1 (inverse divides by its square)
  bool caller_rows = false;  // rotary_embedding: the caller's rows, no frequencies (set_caller_rows)
  bool query_scale = false;  // q times t(position); rotary_dim 0 with it: apply_query_scale (no pairs)
  bool mrope = false;        // M-RoPE sections [16, 12, 12] (D = R = 80); Pos::ids then carry 3 axes
  // Expected specialisation.
  int n = 0;
  CosSin cos_sin = CosSin::mixed;
  XposMode xpos_mode = XposMode::runtime;

  std::string describe() const {
    std::ostringstream o;
    o << to_string(dtype) << (style == Style::half ? " half" : " inter") << " dir=" << static_cast<int>(direction)
      << " in_place=" << in_place << " D=" << head_dim << " R=" << rotary_dim << " pad=" << pad << " hpt=" << forced_hpt
      << " pos=" << static_cast<int>(positions) << " beyond=" << beyond_rows << " xpos=" << xpos << " sincos=" << sincos
      << " n=" << n << " cos_sin=" << static_cast<int>(cos_sin) << " xpos_mode=" << static_cast<int>(xpos_mode)
      << " attention=" << attention << " caller_rows=" << caller_rows << " query_scale=" << query_scale
      << " mrope=" << mrope;
    return o.str();
  }
};

// Every block and thread of the capped grid, in order, as the kernel runs them.
template <class K>
void emulate_grid(KernelArgs& a, const RopeParams& p, int64_t forced_hpt, int64_t max_blocks) {
  LaunchConfig config = configure_launch<K>(a, p, 132, 1024, forced_hpt);
  if (forced_hpt > 0) ASSERT_EQ(a.heads_per_thread, forced_hpt);
  cap_grid(config, max_blocks);
  ASSERT_LE(config.blocks(), max_blocks);
  const int64_t threads = config.threads();
  const int64_t total = threads * config.blocks();
  int64_t block_index = 0;
  for (unsigned bz = 0; bz < config.grid[2]; ++bz)
    for (unsigned by = 0; by < config.grid[1]; ++by)
      for (unsigned bx = 0; bx < config.grid[0]; ++bx, ++block_index)
        for (unsigned tz = 0; tz < config.block[2]; ++tz)
          for (unsigned ty = 0; ty < config.block[1]; ++ty)
            for (unsigned tx = 0; tx < config.block[0]; ++tx) {
              const GridPos g{{bx, by, bz}, {tx, ty, tz}, {config.grid[0], config.grid[1], config.grid[2]},
                              {config.block[0], config.block[1], config.block[2]}};
              if (a.pos.kind == Positions::Kind::packed) {
                const int64_t thread = (int64_t{tz} * config.block[1] + ty) * config.block[0] + tx;
                check_cu_seqlens(a, block_index * threads + thread, total);
              }
              for_each_item(
                  GridExtent{a.batch, a.seq, a.groups, a.chunks_per_row}, g, [&](int64_t b, int64_t s) { return s < a.seq ? token_position(a, b, s) : int64_t{-1}; },
                  [&](int64_t b, int64_t s, int64_t position, int group, int chunk) {
                    rope_item<K>(a, b, s, position, group, chunk);
                  },
                  [] {});
            }
}

struct EmuRun {
  std::vector<unsigned char> q_cpu, k_cpu, q_emu, k_emu, q_initial, k_initial;
  FaultRecord record;
  int32_t claim = 0;
  KernelChoice choice;
};

// Host positions for token t (b-major) in each kind; `bad_token` >= 0 makes that token's position
// invalid for the emulated kernel (the CPU run gets a valid one instead).
struct HostPos {
  std::vector<int32_t> ids;
  std::vector<int64_t> offsets, cu, packed_offsets;
};

EmuRun run(const EmuCase& c, uint64_t seed, const HostPos& hp, const HostPos* emu_pos = nullptr) {
  EmuRun r;
  std::mt19937_64 rng(seed);
  const bool packed = c.positions == Pos::packed;
  const int64_t B = packed ? 1 : 2, S = packed ? 11 : 5, Hq = 5, Hk = 3, D = c.head_dim;
  SpecParams sp;
  sp.head_dim = D;
  sp.rotary_dim = c.rotary_dim;
  sp.style = c.style;
  if (c.xpos) sp.xpos = Xpos{};
  if (c.attention) sp.scaling = ropekit::scaling::Yarn{4.0, 16};
  if (c.mrope) sp.mrope = MRope{{16, 12, 12}, false};
  const RopeSpec spec(sp);
  const RopeTable table(spec, c.beyond_rows ? 12 : 64);

  const size_t es = elem_size(c.dtype);
  const int64_t row = D + c.pad;
  auto make = [&](int64_t H) {
    Buffer v(static_cast<size_t>(B * S * H * row) * es);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (size_t i = 0; i < v.bytes / es; ++i) {
      const float x = u(rng);
      if (c.dtype == DType::f32) std::memcpy(v.data() + 4 * i, &x, 4);
      else {
        const uint16_t h = c.dtype == DType::f16 ? float_to_half(x) : float_to_bf16(x);
        std::memcpy(v.data() + 2 * i, &h, 2);
      }
    }
    return v;
  };
  const Buffer q_in = make(Hq), k_in = make(Hk);
  Buffer q_cpu = c.in_place ? q_in : make(Hq), k_cpu = c.in_place ? k_in : make(Hk);
  Buffer q_emu = q_cpu, k_emu = k_cpu;
  r.q_initial = q_emu.copy();
  r.k_initial = k_emu.copy();

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
  if (c.query_scale) {
    p.has_query_scale = true;
    p.query_scale = QueryScale{1.25, 0.3, 3, 1};  // t changes every 3 positions
  }
  auto positions_of = [&](const HostPos& h) {
    switch (c.positions) {
      case Pos::offset: return Positions::from_offset(c.beyond_rows ? 9 : 6);
      case Pos::ids: return Positions::token_ids(IndexView(h.ids.data(), static_cast<int64_t>(h.ids.size())), c.mrope ? 3 : 1);
      case Pos::offsets: return Positions::per_sequence(IndexView(h.offsets.data(), B));
      case Pos::packed:
        return Positions::packed(IndexView(h.cu.data(), static_cast<int64_t>(h.cu.size())),
                                 IndexView(h.packed_offsets.data(), static_cast<int64_t>(h.packed_offsets.size())));
    }
    return Positions{};
  };
  if (packed) p.num_sequences = static_cast<int64_t>(hp.cu.size()) - 1;
  if (c.mrope) p.pair_axes = pair_axes_of(spec);
  auto operand = [&](const Buffer& in, Buffer& out, int64_t H, float sign) {
    Operand op;
    op.in = c.in_place ? static_cast<const void*>(out.data()) : in.data();
    op.out = out.data();
    op.heads = H;
    op.in_stride[0] = op.out_stride[0] = B == 1 ? 0 : S * H * row;
    op.in_stride[1] = op.out_stride[1] = H * row;
    op.in_stride[2] = op.out_stride[2] = row;
    op.in_place = c.in_place;
    op.xpos_sign = sign;
    return op;
  };
  RopeParams cpu = p;
  cpu.positions = positions_of(hp);
  cpu.q = operand(q_in, q_cpu, Hq, 1.0f);
  cpu.k = operand(k_in, k_cpu, Hk, -1.0f);
  apply_cpu_scalar(cpu);  // the plain loop: same arithmetic order as the kernel body

  RopeParams emu = p;
  emu.positions = positions_of(emu_pos ? *emu_pos : hp);
  emu.q = operand(q_in, q_emu, Hq, 1.0f);
  emu.k = operand(k_in, k_emu, Hk, -1.0f);
  DeviceTable host_table;
  host_table.rows = table.rows().data();
  host_table.size = table.size();
  host_table.inv_freq = table.inv_freq().data();
  host_table.inv_freq_f32 = table.inv_freq_f32().data();
  host_table.xpos_log_zeta = c.xpos ? table.xpos_log_zeta().data() : nullptr;
  KernelArgs a = kernel_args(emu);
  if (a.pos.kind != Positions::Kind::from_offset) {
    a.fault_claim = &r.claim;
    a.fault_record = &r.record;
  }
  if (c.caller_rows) {
    emu.table = nullptr;
    emu.rows_only = true;
    set_caller_rows(a, emu);
  } else {
    set_table(a, emu, host_table);
  }
  auto go = [&]<typename T>() {
    r.choice = choose_kernel<T>(emu, a);
    with_kernel<T>(r.choice, [&]<class K>() { emulate_grid<K>(a, emu, c.forced_hpt, c.max_blocks); });
  };
  switch (c.dtype) {
    case DType::f32: go.template operator()<F32>(); break;
    case DType::f16: go.template operator()<F16>(); break;
    case DType::bf16: go.template operator()<BF16>(); break;
    case DType::f64: break;
  }
  r.q_cpu = q_cpu.copy();
  r.k_cpu = k_cpu.copy();
  r.q_emu = q_emu.copy();
  r.k_emu = k_emu.copy();
  return r;
}

HostPos default_positions(const EmuCase& c) {
  HostPos h;
  const int64_t far = c.beyond_rows ? 40 : 0;  // the table has 12 rows then
  for (int64_t t = 0; t < 10; ++t) h.ids.push_back(static_cast<int32_t>((t * 7) % 11 + (t % 2 ? far : 0)));
  if (c.mrope)  // height and width axes, axis-major after time; token 3 a text token (equal axes)
    for (int64_t axis = 1; axis < 3; ++axis)
      for (int64_t t = 0; t < 10; ++t)
        h.ids.push_back(t == 3 ? h.ids[3] : static_cast<int32_t>((t * (3 + 2 * axis)) % 13 + (t % 3 ? far : 0)));
  h.offsets = {3, c.beyond_rows ? 20 : 9};
  h.cu = {0, 4, 4, 11};
  h.packed_offsets = {3, 0, c.beyond_rows ? 30 : 9};
  return h;
}

// Element-wise comparison of `got` with `want`, skipping the elements of the given token rows.
int compare(const std::vector<unsigned char>& want, const std::vector<unsigned char>& got, DType t, const char* name) {
  const double eps = t == DType::f32 ? std::ldexp(1.0, -23) : t == DType::f16 ? std::ldexp(1.0, -10) : std::ldexp(1.0, -7);
  int failures = 0;
  for (size_t i = 0; i < want.size() / elem_size(t); ++i) {
    const double w = get(want, t, i), g = get(got, t, i);
    if (std::isnan(w) != std::isnan(g) || (!std::isnan(w) && std::fabs(w - g) > eps * (std::fabs(w) + 1e-3))) {
      if (++failures <= 5) ADD_FAILURE() << name << "[" << i << "]: emulated kernel " << g << ", cpu " << w;
    }
  }
  return failures;
}

void check(const EmuCase& c, uint64_t seed) {
  SCOPED_TRACE(c.describe() + " seed=" + std::to_string(seed));
  const EmuRun r = run(c, seed, default_positions(c));
  if (c.n > 0) {  // 0: whichever specialisation the case leads to
    EXPECT_EQ(r.choice.n, c.n);
    EXPECT_EQ(r.choice.cos_sin, c.cos_sin);
    EXPECT_EQ(r.choice.xpos, c.xpos_mode);
  }
  EXPECT_EQ(r.record.ready, 0) << "fault kind " << r.record.kind << " at " << r.record.index;
  EXPECT_EQ(compare(r.q_cpu, r.q_emu, c.dtype, "q") + compare(r.k_cpu, r.k_emu, c.dtype, "k"), 0);
}

uint64_t fresh_seed() {
  if (const char* seed = std::getenv("ROPEKIT_TEST_SEED")) return std::strtoull(seed, nullptr, 10);
  static std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

// The emulated kernel as a backend of the shared case table: the launch apply_cuda would make,
// with the grid capped and heads per thread forced in turn (case by case), so that the grid-stride
// loops and the head groups run. A reported position fault fails the case (its positions are valid).
cases::Backend emulation_backend() {
  auto turn = std::make_shared<int>(0);
  auto run = [turn](const RopeParams& p, std::span<const cases::HostRegion>) {
    const int i = (*turn)++;
    const int64_t forced_hpt = std::vector<int64_t>{0, 1, 2, 3, 8}[static_cast<size_t>(i % 5)];
    const int64_t max_blocks = i % 4 == 0 ? 1000 : 1 + i % 3;
    KernelArgs a = kernel_args(p);
    FaultRecord record{};
    int32_t claim = 0;
    if (a.pos.kind != Positions::Kind::from_offset) {
      a.fault_claim = &claim;
      a.fault_record = &record;
    }
    set_table(a, p, DeviceTable{p.rows, p.rows_count, p.inv_freq, p.inv_freq_f32, p.xpos_log_zeta});
    auto go = [&]<typename T>() {
      with_kernel<T>(choose_kernel<T>(p, a), [&]<class K>() { emulate_grid<K>(a, p, forced_hpt, max_blocks); });
    };
    switch (p.dtype) {
      case DType::f32: go.template operator()<F32>(); break;
      case DType::f16: go.template operator()<F16>(); break;
      case DType::bf16: go.template operator()<BF16>(); break;
      case DType::f64: throw std::runtime_error("the CUDA kernels have no f64");
    }
    if (record.ready)
      throw std::runtime_error("position fault kind " + std::to_string(record.kind) + " at " +
                               std::to_string(record.index) + ", value " + std::to_string(record.value));
  };
  return {"cuda-emulation", false, run, /*agrees_with_scalar=*/true};
}

// The shared case table (src/cases) on the emulated kernel, against the float64 reference and
// the scalar loop.
TEST(CudaKernelEmulation, CaseTable) {
  const uint64_t seed = cases::test_seed();
  SCOPED_TRACE(cases::replay_note(seed));
  cases::expect_table_passes(cases::test_table(seed), emulation_backend());
}

// Hot width per dtype and style, then each narrower width (padding that breaks the wider one).
struct Width {
  int n;
  int64_t pad;
};
std::vector<Width> widths(DType t, Style st) {
  if (t == DType::f32) return {{4, 0}, {2, 2}, {1, 1}};
  if (st == Style::half) return {{4, 0}, {2, 2}, {1, 1}};
  return {{8, 0}, {4, 4}, {2, 2}, {1, 1}};
}

TEST(CudaKernelEmulation, EverySpecialisationMatchesCpu) {
  int index = 0;
  std::set<std::string> specs;
  for (DType t : {DType::f32, DType::f16, DType::bf16})
    for (Style st : {Style::half, Style::interleaved})
      for (const Width& w : widths(t, st)) {
        const bool hot = w.pad == 0;
        // Hot width: rows (offset inside the table) and mixed (past the rows, sincos, or device
        // positions), each without and with xPos; narrow widths: one kernel, several position kinds.
        const int variants = hot ? 8 : 4;
        for (int v = 0; v < variants; ++v, ++index) {
          EmuCase c;
          c.dtype = t;
          c.style = st;
          c.pad = w.pad;
          c.n = w.n;
          c.direction = static_cast<Direction>(index % 3);
          c.in_place = index % 2 == 0;
          c.rotary_dim = index % 3 == 1 ? 32 : 80;  // partial rotary: the tail is copied out of place
          c.forced_hpt = std::vector<int64_t>{0, 1, 2, 3, 8}[static_cast<size_t>(index % 5)];
          c.max_blocks = index % 4 == 0 ? 1000 : 1 + index % 3;
          if (hot) {
            c.xpos = v % 2 == 1;
            c.xpos_mode = c.xpos ? XposMode::xpos : XposMode::none;
            const int kind = v / 2;  // 0: rows; 1: past the rows; 2: sincos; 3: device positions
            c.cos_sin = kind == 0 ? CosSin::rows : CosSin::mixed;
            c.beyond_rows = kind == 1 || (kind == 3 && index % 2 == 0);
            c.sincos = kind == 2;
            c.positions = kind == 3 ? static_cast<Pos>(1 + index % 3) : Pos::offset;
          } else {
            c.xpos = v % 2 == 1;
            c.positions = static_cast<Pos>(v);
            c.beyond_rows = v >= 2;
            c.sincos = v == 1;
          }
          check(c, fresh_seed());
          specs.insert(std::to_string(static_cast<int>(t)) + "/" + std::to_string(static_cast<int>(st)) + "/" +
                       std::to_string(c.n) + "/" + std::to_string(static_cast<int>(c.cos_sin)) + "/" +
                       std::to_string(static_cast<int>(c.xpos_mode)));
          if (HasFailure()) return;
        }
      }
  // 3 dtypes x 2 styles x 4 hot kernels, plus the narrow widths (f32: 2 per style; bf16/f16: half 2,
  // interleaved 3): every kernel launch_* can pick.
  EXPECT_EQ(specs.size(), 3u * 2 * 4 + 2 * 2 + 2 * (2 + 3));
}

// The attention factor in every direction (inverse divides by its square), pass-through tails
// that are not a whole number of chunks (element-wise remainder), odd pair counts, and the
// caller's rows of rotary_embedding (positions below its rows, device ids).
TEST(CudaKernelEmulation, AttentionFactorOddTailsAndCallerRows) {
  int cases = 0;
  for (DType t : {DType::f32, DType::f16, DType::bf16})
    for (Style st : {Style::half, Style::interleaved})
      for (Direction d : {Direction::forward, Direction::backward, Direction::inverse})
        for (const auto& [D, R] : std::vector<std::pair<int64_t, int64_t>>{{70, 32}, {80, 18}, {80, 80}})
          for (bool caller_rows : {false, true}) {
            EmuCase c;
            c.dtype = t;
            c.style = st;
            c.direction = d;
            c.head_dim = D;
            c.rotary_dim = R;
            c.in_place = (cases % 2 == 0) || caller_rows;  // rotary_embedding is in place
            c.attention = !caller_rows;
            c.caller_rows = caller_rows;
            c.positions = caller_rows ? Pos::ids : cases % 3 == 0 ? Pos::offset : Pos::offsets;
            c.max_blocks = 1 + cases % 4;
            if (caller_rows && R == 80) {  // the hot width: the table path (rows only), even for device ids
              c.n = t == DType::f32 || st == Style::half ? 4 : 8;
              c.cos_sin = CosSin::rows;
              c.xpos_mode = XposMode::none;
            }
            check(c, fresh_seed());
            ++cases;
            if (HasFailure()) return;
          }
  EXPECT_EQ(cases, 3 * 2 * 3 * 3 * 2);

  // The caller's cache has no frequencies: a device id at its row count is a fault (bound: the
  // last row), its token left as it was.
  EmuCase c;
  c.caller_rows = true;
  c.positions = Pos::ids;
  const HostPos good = default_positions(c);
  HostPos past = good;
  past.ids[3] = 64;  // the table has 64 rows
  const EmuRun r = run(c, fresh_seed(), good, &past);
  EXPECT_EQ(r.record.ready, 1);
  EXPECT_EQ(r.record.kind, static_cast<int32_t>(FaultKind::ids));
  EXPECT_EQ(r.record.index, 3);
  EXPECT_EQ(r.record.value, 64);
  EXPECT_EQ(r.record.bound, 63);
}

// A query scale on q in every direction and width: with full and partial rotary (the tail is
// scaled, in place too) and with no pairs at all (apply_query_scale on a NoPE layer).
TEST(CudaKernelEmulation, QueryScale) {
  int cases = 0;
  for (DType t : {DType::f32, DType::f16, DType::bf16})
    for (Style st : {Style::half, Style::interleaved})
      for (const Width& w : widths(t, st))
        for (int64_t R : {int64_t{80}, int64_t{32}, int64_t{0}})
          for (Direction d : {Direction::forward, Direction::backward, Direction::inverse}) {
            EmuCase c;
            c.dtype = t;
            c.style = st;
            c.pad = w.pad;
            c.rotary_dim = R;
            c.direction = d;
            c.query_scale = true;
            c.xpos = R > 0 && cases % 4 == 1;
            c.in_place = cases % 2 == 0;
            c.positions = static_cast<Pos>(cases % 4);
            c.beyond_rows = cases % 3 == 0;
            c.max_blocks = 1 + cases % 4;
            check(c, fresh_seed());
            ++cases;
            if (HasFailure()) return;
          }
  EXPECT_EQ(cases, (2 * 3 + 2 * (3 + 4)) * 3 * 3);  // widths: f32 3 per style; f16, bf16 3 half, 4 interleaved
}

// M-RoPE ids (3 axes) through the kernel body: the plain loop's answer for every style, dtype and
// width, rows and past them; a bad id on the width axis is reported with its flat index and only
// its token is skipped.
TEST(CudaKernelEmulation, MRopeAxes) {
  int cases = 0;
  for (DType t : {DType::f32, DType::f16, DType::bf16})
    for (Style st : {Style::half, Style::interleaved})
      for (const Width& w : widths(t, st))
        for (bool beyond : {false, true}) {
          EmuCase c;
          c.dtype = t;
          c.style = st;
          c.pad = w.pad;
          c.positions = Pos::ids;
          c.mrope = true;
          c.beyond_rows = beyond;
          c.sincos = cases % 3 == 2;
          c.in_place = cases % 2 == 0;
          check(c, fresh_seed());
          ++cases;
          if (HasFailure()) return;
        }
  EXPECT_GT(cases, 0);
  EmuCase c;
  c.dtype = DType::f32;
  c.positions = Pos::ids;
  c.mrope = true;
  const HostPos good = default_positions(c);
  HostPos wrong = good;
  wrong.ids[2 * 10 + 7] = -4;  // token 7's width id
  const EmuRun r = run(c, fresh_seed(), good, &wrong);
  EXPECT_EQ(r.record.ready, 1);
  EXPECT_EQ(r.record.kind, static_cast<int32_t>(FaultKind::ids));
  EXPECT_EQ(r.record.index, 27);
  EXPECT_EQ(r.record.value, -4);
  const size_t es = elem_size(c.dtype);
  const int64_t heads[2] = {5, 3};
  const std::vector<unsigned char>* got[2] = {&r.q_emu, &r.k_emu};
  const std::vector<unsigned char>* want[2] = {&r.q_cpu, &r.k_cpu};
  const std::vector<unsigned char>* initial[2] = {&r.q_initial, &r.k_initial};
  for (int o = 0; o < 2; ++o) {
    const size_t token_bytes = static_cast<size_t>(heads[o] * c.head_dim) * es;
    for (size_t token = 0; token < 10; ++token) {
      const auto begin = static_cast<std::ptrdiff_t>(token * token_bytes);
      const auto end = begin + static_cast<std::ptrdiff_t>(token_bytes);
      const auto& expected = token == 7 ? *initial[o] : *want[o];
      EXPECT_TRUE(std::equal(got[o]->begin() + begin, got[o]->begin() + end, expected.begin() + begin)) << o << " " << token;
    }
  }
}

// Invalid device-resident positions: reported once (kind, index, value), their tokens left as
// they were, every other token rotated.
TEST(CudaKernelEmulation, InvalidPositionsAreReportedAndSkipped) {
  struct Bad {
    Pos kind;
    FaultKind fault;
    int64_t index;
    int64_t value;
    std::vector<int64_t> skipped_tokens;  // b-major token numbers left unwritten
  };
  const std::vector<Bad> cases = {
      {Pos::ids, FaultKind::ids, 7, -4, {7}},
      {Pos::offsets, FaultKind::offsets, 1, -1, {5, 6, 7, 8, 9}},
      {Pos::offsets, FaultKind::offsets, 0, INT64_MAX - 2, {0, 1, 2, 3, 4}},  // its last position overflows
      {Pos::packed, FaultKind::packed_offsets, 2, -5, {4, 5, 6, 7, 8, 9, 10}},
      {Pos::packed, FaultKind::cu_last, 3, 10, {10}},   // cu_seqlens ends before the last token
      {Pos::packed, FaultKind::cu_first, 0, 1, {0, 1, 2, 3}},  // the first sequence is malformed
  };
  for (DType t : {DType::f32, DType::bf16})
    for (const Bad& bad : cases) {
      EmuCase c;
      c.dtype = t;
      c.positions = bad.kind;
      c.in_place = bad.kind != Pos::offsets;
      const HostPos good = default_positions(c);
      HostPos wrong = good;
      switch (bad.fault) {
        case FaultKind::ids: wrong.ids[static_cast<size_t>(bad.index)] = static_cast<int32_t>(bad.value); break;
        case FaultKind::offsets: wrong.offsets[static_cast<size_t>(bad.index)] = bad.value; break;
        case FaultKind::packed_offsets: wrong.packed_offsets[static_cast<size_t>(bad.index)] = bad.value; break;
        case FaultKind::cu_last: wrong.cu[3] = 10; break;
        case FaultKind::cu_first: wrong.cu[0] = 1; break;
        default: break;
      }
      SCOPED_TRACE(c.describe() + " fault " + std::to_string(static_cast<int>(bad.fault)));
      const EmuRun r = run(c, fresh_seed(), good, &wrong);
      EXPECT_EQ(r.record.ready, 1);
      EXPECT_EQ(r.record.kind, static_cast<int32_t>(bad.fault));
      EXPECT_EQ(r.record.index, bad.index);
      EXPECT_EQ(r.record.value, bad.value);
      // Expected: the CPU result, except the skipped tokens, which keep their initial contents.
      const int64_t rows_per_token[2] = {5 * c.head_dim, 3 * c.head_dim};  // Hq, Hk heads (no padding)
      std::vector<unsigned char> want[2] = {r.q_cpu, r.k_cpu};
      const std::vector<unsigned char>* initial[2] = {&r.q_initial, &r.k_initial};
      const size_t es = elem_size(t);
      for (int o = 0; o < 2; ++o)
        for (int64_t token : bad.skipped_tokens) {
          const size_t begin = static_cast<size_t>(token * rows_per_token[o]) * es;
          const size_t end = begin + static_cast<size_t>(rows_per_token[o]) * es;
          std::memcpy(want[o].data() + begin, initial[o]->data() + begin, end - begin);
        }
      EXPECT_EQ(compare(want[0], r.q_emu, t, "q") + compare(want[1], r.k_emu, t, "k"), 0);
      if (HasFailure()) return;
    }
}

}  // namespace
}  // namespace ropekit::detail::cuda
