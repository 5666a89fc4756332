// The bad-input catalogue at the edges: each case expects ropekit::Error whose message names the
// argument, and a poisoned buffer byte-identical before and after.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "reference64.hpp"
#include "ropekit/explicit.hpp"
#include "ropekit/ropekit.hpp"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

// Runs `f` in a child process whose address space may grow by at most `extra` bytes; true when it
// returned normally. Under ASan / TSan / valgrind (which reserve address space of their own) the
// limit is not set and only the call is checked.
template <typename F>
bool runs_within_memory(size_t extra, F f) {
  bool limit = true;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  limit = false;
#endif
  if (const char* preload = std::getenv("LD_PRELOAD"); preload != nullptr && std::strstr(preload, "vgpreload")) limit = false;
  const pid_t pid = fork();
  if (pid == 0) {
    if (limit) {
      unsigned long pages = 0;
      if (FILE* statm = std::fopen("/proc/self/statm", "r")) {
        if (std::fscanf(statm, "%lu", &pages) != 1) pages = 0;
        std::fclose(statm);
      }
      const rlimit r{pages * static_cast<unsigned long>(sysconf(_SC_PAGESIZE)) + extra, RLIM_INFINITY};
      if (pages == 0 || setrlimit(RLIMIT_AS, &r) != 0) _exit(3);
    }
    try {
      f();
    } catch (...) {
      _exit(1);
    }
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

namespace {

using namespace ropekit;

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kDenormal = std::numeric_limits<double>::denorm_min();

// A buffer of random non-zero floats; snapshot() and unchanged() compare every byte.
struct Poisoned {
  std::vector<float> values;
  std::vector<float> before;
  explicit Poisoned(size_t n, uint32_t seed = 7) : values(n) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(0.25f, 2.0f);
    for (auto& v : values) v = dist(rng);
    before = values;
  }
  float* data() { return values.data(); }
  bool unchanged() const { return std::memcmp(values.data(), before.data(), values.size() * sizeof(float)) == 0; }
};

// Runs `call`, expecting ropekit::Error whose message contains `argument`.
void expect_error(const std::function<void()>& call, const std::string& argument) {
  try {
    call();
    ADD_FAILURE() << "expected ropekit::Error naming " << argument;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(argument), std::string::npos) << "message: " << e.what();
  }
}

RopeSpec small_spec() { return RopeSpec({.head_dim = 8, .base = 10000}); }

TensorView view(void* data, std::array<int64_t, 4> shape, std::array<int64_t, 4> strides) {
  return {data, DType::f32, Device::cpu(), 4, shape, strides};
}

// ---- positions near INT64_MAX and beyond any table --------------------------------------------------

TEST(Positions, StartNearInt64MaxOverflowsStartPlusSeq) {
  Poisoned q(2 * 8 * 2 * 8);
  const RopeTable table(small_spec(), 16);
  auto v = TensorView::bshd(q.data(), DType::f32, 2, 8, 2, 8);
  for (bool in_kernel : {false, true}) {
    ApplyOptions o;
    o.compute_sincos = in_kernel;
    for (int64_t start : {kMax, kMax - 1, kMax - 6}) {
      expect_error([&] { apply_rope({v}, Positions::from_offset(start), table, o); }, "positions.start");
    }
  }
  expect_error([&] { (void)required_table_size({v}, Positions::from_offset(kMax - 3)); }, "positions.start");
  EXPECT_TRUE(q.unchanged());
  // The last start that keeps start + seq - 1 < 2^63 - 1 is accepted in-kernel (positions as float).
  ApplyOptions o;
  o.compute_sincos = true;
  EXPECT_NO_THROW(apply_rope({v}, Positions::from_offset(kMax - 8), table, o));
}

TEST(Positions, IdsBeyondTheTableAndAt2To31) {
  const RopeTable table(small_spec(), 64);
  Poisoned q(4 * 1 * 8);
  auto v = TensorView::thd(q.data(), DType::f32, 4, 1, 8);
  const int64_t big = (int64_t{1} << 31) + 5;
  std::vector<int64_t> ids = {0, 1, big, 3};
  EXPECT_EQ(required_table_size({v}, Positions::token_ids({ids.data(), 4})), big + 1);
  ids[2] = kMax;  // largest + 1 would overflow
  ApplyOptions o;
  o.compute_sincos = true;
  expect_error([&] { apply_rope({v}, Positions::token_ids({ids.data(), 4}), table, o); }, "positions.ids[2]");
  expect_error([&] { (void)required_table_size({v}, Positions::token_ids({ids.data(), 4})); }, "positions.ids[2]");
  EXPECT_TRUE(q.unchanged());
  // Past 2^31, with or without compute_sincos (a table row does not exist there): accepted, equal,
  // and each pair keeps its length (a rotation).
  ids[2] = big;
  apply_rope({v}, Positions::token_ids({ids.data(), 4}), table, o);
  const std::vector<float> in_kernel = q.values;
  q.values = q.before;
  apply_rope({v}, Positions::token_ids({ids.data(), 4}), table);
  EXPECT_EQ(q.values, in_kernel);
  for (int64_t i = 0; i < 4; ++i) {
    const float* a = q.before.data() + 2 * 8;
    const float* b = q.values.data() + 2 * 8;
    EXPECT_NEAR(std::hypot(a[i], a[i + 4]), std::hypot(b[i], b[i + 4]), 1e-5);
  }
}

TEST(Positions, PerSequenceOffsetNearInt64Max) {
  const RopeTable table(small_spec(), 64);
  Poisoned q(2 * 4 * 1 * 8);
  auto v = TensorView::bshd(q.data(), DType::f32, 2, 4, 1, 8);
  std::vector<int64_t> offsets = {0, kMax - 2};
  ApplyOptions o;
  o.compute_sincos = true;
  expect_error([&] { apply_rope({v}, Positions::per_sequence({offsets.data(), 2}), table, o); }, "positions.offsets[1]");
  expect_error([&] { (void)required_table_size({v}, Positions::per_sequence({offsets.data(), 2})); }, "positions.offsets[1]");
  EXPECT_TRUE(q.unchanged());
}

TEST(Positions, CuSeqlensWithHugeValues) {
  const RopeTable table(small_spec(), 64);
  Poisoned q(6 * 1 * 8);
  auto v = TensorView::thd(q.data(), DType::f32, 6, 1, 8);
  ApplyOptions o;
  o.compute_sincos = true;
  for (int64_t huge : {kMax, kMax - 1, int64_t{1} << 40}) {
    std::vector<int64_t> cu = {0, huge, 6};
    expect_error([&] { apply_rope({v}, Positions::packed({cu.data(), 3}), table, o); }, "positions.cu_seqlens[1]");
    std::vector<int64_t> cu_last = {0, 2, huge};
    expect_error([&] { apply_rope({v}, Positions::packed({cu_last.data(), 3}), table, o); }, "positions.cu_seqlens[2]");
  }
  std::vector<int64_t> cu = {0, 2, 6};
  std::vector<int64_t> offsets = {0, kMax - 2};  // + 4 tokens - 1 overflows
  expect_error([&] { apply_rope({v}, Positions::packed({cu.data(), 3}, {offsets.data(), 2}), table, o); },
               "positions.offsets[1]");
  // The last accepted offset: off + (tokens - 1) = 2^63 - 2, while off + cu_seqlens[2] alone would
  // overflow (found by fuzz_apply). Accepted in-kernel.
  std::vector<int64_t> edge = {0, kMax - 4};
  EXPECT_NO_THROW(apply_rope({v}, Positions::packed({cu.data(), 3}, {edge.data(), 2}), table, o));
  q.before = q.values;
  std::vector<int32_t> cu32 = {0, std::numeric_limits<int32_t>::max(), 6};
  expect_error([&] { apply_rope({v}, Positions::packed({cu32.data(), 3}), table, o); }, "positions.cu_seqlens[1]");
  EXPECT_TRUE(q.unchanged());
}

// ---- shapes and strides whose products overflow -------------------------------------------------------

TEST(Shapes, ElementCountOverflowingInt64) {
  const RopeTable table(small_spec(), 16);
  Poisoned q(64);
  const int64_t big = int64_t{1} << 40;
  auto v = view(q.data(), {big, big, 1, 8}, {8, 8, 8, 1});
  expect_error([&] { apply_rope({v}, Positions::from_offset(0), table); }, "q.shape");
  // An empty view whose other extents multiply past int64 (batch * seq would overflow).
  auto empty = view(q.data(), {big, big, 0, 8}, {0, 0, 8, 1});
  expect_error([&] { apply_rope({empty}, Positions::from_offset(0), table); }, "q.shape");
  expect_error([&] { (void)required_table_size({empty}, Positions::from_offset(0)); }, "q.shape");
  EXPECT_EQ(empty.numel(), 0);  // no product is formed once an extent is 0
  expect_error([&] { (void)v.numel(); }, "shape");
  // k, q_out and k_out are checked the same way.
  auto ok = TensorView::bshd(q.data(), DType::f32, 1, 2, 1, 8);
  Poisoned other(64);
  auto k_huge = view(other.data(), {1, 2, int64_t{1} << 60, 8}, {8, 8, 8, 1});  // 2^66 bytes
  expect_error([&] { apply_rope({ok, k_huge}, Positions::from_offset(0), table); }, "k.shape");
  EXPECT_TRUE(q.unchanged());
  EXPECT_TRUE(other.unchanged());
}

TEST(Shapes, ContiguousFactoriesRejectSizesPastInt64) {
  const int64_t big = int64_t{1} << 40;
  expect_error([&] { (void)TensorView::bshd(nullptr, DType::f32, 2, big, big, 8); }, "shape");
  expect_error([&] { (void)TensorView::bhsd(nullptr, DType::f32, 2, big, big, 8); }, "shape");
  expect_error([&] { (void)TensorView::thd(nullptr, DType::f32, 2, big, int64_t{1} << 24); }, "shape");
  EXPECT_NO_THROW((void)TensorView::bshd(nullptr, DType::f32, big, 0, 4, 8));  // empty, fine
}

TEST(Strides, ByteOffsetsOverflowingInt64) {
  const RopeTable table(small_spec(), 16);
  Poisoned q(256);
  for (int64_t stride : {kMax, kMax / 2, int64_t{1} << 61}) {
    auto v = view(q.data(), {2, 2, 2, 8}, {stride, 16, 8, 1});
    expect_error([&] { apply_rope({v}, Positions::from_offset(0), table); }, "q.strides");
    auto qo = TensorView::bshd(q.data() + 128, DType::f32, 2, 2, 2, 8);
    auto in = TensorView::bshd(q.data(), DType::f32, 2, 2, 2, 8);
    auto out = view(q.data() + 64, {2, 2, 2, 8}, {16, stride, 8, 1});
    expect_error([&] { apply_rope({in, std::nullopt, out}, Positions::from_offset(0), table); }, "q_out.strides");
    (void)qo;
  }
  EXPECT_TRUE(q.unchanged());
}

// A dim of extent 1 never uses its stride, so any stride there is fine (and must not be multiplied).
TEST(Strides, ExtentOneDimWithHugeStrideIsAccepted) {
  const RopeTable table(small_spec(), 16);
  Poisoned a(4 * 2 * 8, 3), b(4 * 2 * 8, 3);
  auto odd = view(a.data(), {1, 4, 2, 8}, {kMax, 16, 8, 1});
  auto plain = TensorView::bshd(b.data(), DType::f32, 1, 4, 2, 8);
  apply_rope({odd}, Positions::from_offset(3), table);
  apply_rope({plain}, Positions::from_offset(3), table);
  EXPECT_EQ(a.values, b.values);
  EXPECT_FALSE(a.unchanged());
}

// ---- empty tensors: valid, nothing written ------------------------------------------------------------

TEST(Empty, EmptyViewsReturnAtOnceAndWriteNothing) {
  const RopeTable table(small_spec(), 4);
  Poisoned q(64);
  for (auto shape : std::vector<std::array<int64_t, 4>>{{0, 4, 2, 8}, {2, 0, 2, 8}, {2, 4, 0, 8}}) {
    auto v = view(q.data(), shape, {64, 16, 8, 1});
    EXPECT_NO_THROW(apply_rope({v}, Positions::from_offset(1000), table, {.compute_sincos = true}));
    EXPECT_NO_THROW(apply_rope({v}, Positions::from_offset(0), table));
    auto null_view = view(nullptr, shape, {64, 16, 8, 1});
    EXPECT_NO_THROW(apply_rope({null_view}, Positions::from_offset(0), table));
  }
  EXPECT_TRUE(q.unchanged());
}

// q with 0 heads (null data) beside a k with heads: k is rotated exactly as alone, q untouched.
TEST(Empty, EmptyQBesideNonEmptyK) {
  const RopeTable table(small_spec(), 16);
  Poisoned k1(1 * 4 * 2 * 8, 5), k2(1 * 4 * 2 * 8, 5);
  auto q_empty = view(nullptr, {1, 4, 0, 8}, {0, 0, 8, 1});
  apply_rope({q_empty, TensorView::bshd(k1.data(), DType::f32, 1, 4, 2, 8)}, Positions::from_offset(2), table);
  apply_rope({TensorView::bshd(k2.data(), DType::f32, 1, 4, 2, 8)}, Positions::from_offset(2), table);
  EXPECT_FALSE(k1.unchanged());
  EXPECT_EQ(k1.values, k2.values);  // no xPos: k's rotation equals q's
}

// ---- options and spec values ---------------------------------------------------------------------------

TEST(Options, NonFiniteXposCenter) {
  const RopeSpec spec({.head_dim = 8, .base = 10000, .style = Style::interleaved, .xpos = Xpos{}});
  const RopeTable table(spec, 16);
  Poisoned q(4 * 8);
  auto v = TensorView::thd(q.data(), DType::f32, 4, 1, 8);
  for (double c : {kNaN, kInf, -kInf})
    expect_error([&] { apply_rope({v}, Positions::from_offset(0), table, {.xpos_center = c}); }, "options.xpos_center");
  EXPECT_TRUE(q.unchanged());
}

TEST(Spec, NonFiniteAndDenormalValues) {
  struct Case {
    SpecParams params;
    std::string argument;
  };
  const std::vector<Case> cases = {
      {{.head_dim = 8, .base = kInf}, "base"},
      {{.head_dim = 8, .base = kNaN}, "base"},
      {{.head_dim = 8, .base = kDenormal}, "base"},
      {{.head_dim = int64_t{1} << 40}, "head_dim"},
      {{.head_dim = kMax - 1}, "head_dim"},
      // Each field in range, yet the frequencies or attention factor break float32 tables:
      {{.head_dim = 8, .scaling = scaling::Linear{kDenormal}}, "scaling.linear"},
      {{.head_dim = 8, .scaling = scaling::Linear{1e-45}}, "scaling.linear"},
      {{.head_dim = 8, .scaling = scaling::NtkAware{1e-300}}, "scaling.ntk_aware"},
      {{.head_dim = 8, .scaling = scaling::Yarn{.factor = std::exp(10.0), .mscale = 1.0, .mscale_all_dim = -1.0}},
       "scaling.yarn"},  // get_mscale(e^10, -1) = 0: division by zero
      {{.head_dim = 8, .scaling = scaling::Yarn{.factor = 2, .attention_multiplier = 1e300}}, "scaling.yarn"},
      {{.head_dim = 8, .scaling = scaling::Yarn{.factor = 2, .attention_factor = kDenormal}}, "scaling.yarn"},
      {{.head_dim = 4, .scaling = scaling::LongRope{{kDenormal, 1}, {1, 1}, 16}}, "scaling.longrope"},
      {{.head_dim = 4, .scaling = scaling::LongRope{{1, 1}, {1, kInf}, 16}}, "scaling.longrope.long_factor[1]"},
      {{.head_dim = 8, .xpos = Xpos{.scale_base = kDenormal}}, "xpos.scale_base"},
      {{.head_dim = 8, .xpos = Xpos{.scale_base = 512, .gamma = kNaN}}, "xpos.gamma"},
      {{.head_dim = 8, .scaling = scaling::Truncated{kNaN, 1, 0}}, "scaling.truncated.a"},
      {{.head_dim = 8, .scaling = scaling::Llama3{.factor = kInf}}, "scaling.llama3.factor"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.argument);
    expect_error([&] { RopeSpec spec(c.params); }, c.argument);
  }
  expect_error([&] { (void)scaling::Truncated::from_length(kDenormal); }, "scaling.truncated");
  // Edges that are fine: original_max = INT64_MAX (no overflow looking at the long factors).
  EXPECT_NO_THROW(RopeSpec({.head_dim = 4, .scaling = scaling::LongRope{{1, 2}, {3, 4}, kMax}}));
  EXPECT_NO_THROW(RopeSpec({.head_dim = 4, .scaling = scaling::DynamicNtk{2.0, kMax}}));
  EXPECT_NO_THROW(RopeSpec({.head_dim = 65536}));
}

TEST(Table, GrownWithHugeOrNegativeN) {
  const RopeTable table(small_spec(), 8);
  const std::vector<float> before(table.rows().begin(), table.rows().end());
  for (int64_t n : {kMax, kMax - 1, (int64_t{1} << 31) + 1, int64_t{-1}, std::numeric_limits<int64_t>::min()}) {
    expect_error([&] { (void)table.grown(n); }, "n");
    expect_error([&] { (void)table.for_seq_len(n); }, "seq_len");
    expect_error([&] { RopeTable(small_spec(), n); }, "positions");
  }
  EXPECT_EQ(table.size(), 8);
  EXPECT_EQ(std::vector<float>(table.rows().begin(), table.rows().end()), before);
}

// The convenience overload builds a table for the largest position: a huge one is an Error, not an
// allocation of terabytes.
// One token at a far position must not build a table up to it: the spec overload computes cos/sin
// in the kernel (before, position 2^31 - 2 raised std::bad_alloc and position 4M took 2 GB).
TEST(Table, SpecOverloadAtFarPositionsAllocatesNoTable) {
  for (int64_t start : {int64_t{4} << 20, (int64_t{1} << 31) - 2, int64_t{1} << 40}) {
    Poisoned q(4 * 8);
    auto v = TensorView::thd(q.data(), DType::f32, 4, 1, 8);
    // 64 MiB of address space to spare: a table up to `start` would need 128 MiB to 32 TiB.
    EXPECT_TRUE(runs_within_memory(size_t{64} << 20, [&] { apply_rope({v}, Positions::from_offset(start), small_spec()); }))
        << "start " << start;
    apply_rope({v}, Positions::from_offset(start), small_spec());
    // The same as a table's in-kernel path at those positions.
    Poisoned r(4 * 8);
    r.values = q.before;
    apply_rope({TensorView::thd(r.data(), DType::f32, 4, 1, 8)}, Positions::from_offset(start), RopeTable(small_spec()),
               {.compute_sincos = true});
    EXPECT_EQ(q.values, r.values) << "start " << start;
  }
}

// A table too large for memory is a ropekit::Error naming its size, not std::bad_alloc.
TEST(Table, AllocationFailureIsAnError) {
  const RopeSpec spec({.head_dim = 65536});  // 2^31 rows x 2^16 floats x 4 bytes: no machine has that
  expect_error([&] { RopeTable(spec, int64_t{1} << 31); }, "positions");
}

}  // namespace

namespace {
// apply_explicit checks view extents as apply_rope does (the fuzzer found a stride product that
// overflowed int64 inside the overlap check).
TEST(Explicit, HugeStridesAreAnErrorNotAnOverflow) {
  std::vector<float> x(64, 1.0f), c(4, 1.0f), s(4, 0.0f);
  auto v = TensorView::thd(x.data(), DType::f32, 2, 2, 16);
  v.strides[0] = std::numeric_limits<int64_t>::max();
  const ropekit::ExplicitCoefficients co{c.data(), s.data(), 2, 2};
  expect_error([&] { ropekit::apply_explicit(v, std::nullopt, co, ropekit::Style::half); }, "x.strides");
  auto out = TensorView::thd(x.data() + 32, DType::f32, 2, 2, 16);
  out.strides[1] = int64_t{1} << 61;
  expect_error([&] { ropekit::apply_explicit(TensorView::thd(x.data(), DType::f32, 2, 2, 16), out, co, ropekit::Style::half); },
               "out.strides");
}
}  // namespace

namespace {
// An extent-1 dimension addresses nothing, so its stride may be anything (as torch's size-1 dims).
TEST(Views, ExtentOneDimensionsMayCarryAnyStride) {
  std::vector<float> a(2 * 16), b(2 * 16);
  for (size_t i = 0; i < a.size(); ++i) a[i] = b[i] = 0.25f * static_cast<float>(i + 1);
  auto odd = TensorView::bshd(a.data(), DType::f32, 1, 2, 1, 16);
  odd.strides[0] = -12345;
  odd.strides[2] = std::numeric_limits<int64_t>::min();
  const RopeSpec spec({.head_dim = 16});
  apply_rope({odd}, Positions::from_offset(3), spec);
  apply_rope({TensorView::bshd(b.data(), DType::f32, 1, 2, 1, 16)}, Positions::from_offset(3), spec);
  EXPECT_EQ(a, b);
}
}  // namespace
