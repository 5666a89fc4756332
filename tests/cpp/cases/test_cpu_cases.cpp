// The case table on the scalar loop and on each Highway target this build has and this CPU runs.
#include <cstring>
#include <new>

#include "case_test_util.hpp"

namespace ropekit::cases {
namespace {

TEST(CaseTable, EveryCpuBackend) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(replay_note(seed));
  const auto table = test_table(seed);
  for (const Backend& backend : cpu_backends()) {
    SCOPED_TRACE(backend.name);
    expect_table_passes(table, backend);
  }
}

// A backend that writes nothing fails: unrotated values in place, NaN left in out-of-place outputs.
TEST(CaseTable, CheckerRejectsUnwrittenOutputs) {
  const Backend idle{"idle", true, [](const detail::RopeParams&, std::span<const HostRegion>) {}};
  const auto table = case_table({.seed = 5});
  for (const Case& c : table) {
    // Positions from an offset may start at 0, packed ones without offsets do in every sequence:
    // in place, a no-op is right for a few tokens there.
    if (c.in_place && (c.positions == PositionMode::offset || c.positions == PositionMode::packed)) continue;
    EXPECT_FALSE(check_case(c, idle).passed) << c.describe();
  }
}

// Host memory standing in for a device's: the backend runs on copies, with the originals NaN.
Memory host_memory(bool download = true) {
  Memory m;
  m.device = Device::cpu();
  m.allocate = [](size_t bytes) { return ::operator new(bytes); };
  m.release = [](void* p) { ::operator delete(p); };
  m.upload = [](void* to, const void* host, size_t bytes) { std::memcpy(to, host, bytes); };
  m.download = [download](void* host, const void* from, size_t bytes) {
    if (download) std::memcpy(host, from, bytes);
  };
  return m;
}

// The relocation the CUDA device backends use, on the host: every case passes when the results
// come back, and fails when they do not (the host outputs keep the NaN written over them).
TEST(CaseTable, RelocatedBackendMovesEveryPointer) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(replay_note(seed));
  const auto table = test_table(seed);
  expect_table_passes(table, relocated("scalar (relocated)", true, host_memory(), detail::apply_cpu_scalar));
  const Backend lost = relocated("scalar (downloads lost)", true, host_memory(false), detail::apply_cpu_scalar);
  for (const Case& c : table) EXPECT_FALSE(check_case(c, lost).passed) << c.describe();
}

// A backend that agrees with the scalar loop must do so within one storage ulp: four float32 ulps
// on one element pass the reference's tolerance, and fail that check.
TEST(CaseTable, AgreementWithTheScalarLoopIsChecked) {
  auto off_by_four_ulps = [](const detail::RopeParams& p, std::span<const HostRegion>) {
    detail::apply_cpu_scalar(p);
    uint32_t bits;
    std::memcpy(&bits, p.q.out, 4);
    bits += 4;
    std::memcpy(p.q.out, &bits, 4);
  };
  Backend close{"scalar + 4 ulps", false, off_by_four_ulps}, agreeing = close;
  agreeing.agrees_with_scalar = true;
  int checked = 0;
  for (const Case& c : case_table({.seed = 11})) {
    if (c.dtype != DType::f32) continue;
    EXPECT_TRUE(check_case(c, close).passed) << c.describe();
    EXPECT_FALSE(check_case(c, agreeing).passed) << c.describe();
    ++checked;
  }
  EXPECT_GT(checked, 10);
}

// The covering subset is the same every run; only shapes and inputs follow the seed.
TEST(CaseTable, CoveringIsDeterministic) {
  const auto a = case_table({.seed = 1}), b = case_table({.seed = 2});
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].dtype, b[i].dtype);
    EXPECT_EQ(a[i].positions, b[i].positions);
    EXPECT_EQ(a[i].cos_sin, b[i].cos_sin);
  }
  std::cout << "[ cases ] covering subset: " << a.size() << " cases\n";
}

}  // namespace
}  // namespace ropekit::cases
