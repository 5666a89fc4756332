// The case table on the scalar loop and on each Highway target this build has and this CPU runs.
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
    if (c.in_place && c.positions == PositionMode::offset) continue;  // may start at position 0: a no-op is right
    EXPECT_FALSE(check_case(c, idle).passed) << c.describe();
  }
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
