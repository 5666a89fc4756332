#pragma once
// Runs the shared case table on one backend under GoogleTest: the seed printed with any failure
// (ROPEKIT_TEST_SEED replays it) and the number of cases run on stdout.
#include <gtest/gtest.h>

#include <iostream>

#include "check_case.hpp"

namespace ropekit::cases {

inline constexpr int kRandomDraws = 40;

inline std::vector<Case> test_table(uint64_t seed) { return case_table({.seed = seed, .random_draws = kRandomDraws}); }

// The caller's SCOPED_TRACE(replay_note(seed)) names the seed of `table`.
inline void expect_table_passes(const std::vector<Case>& table, const Backend& backend) {
  const TableResult r = run_table(table, backend);
  std::cout << "[ cases ] " << backend.name << ": " << r.ran << " run, " << r.skipped << " skipped (dtype)\n";
  EXPECT_GT(r.ran, 0);
  EXPECT_EQ(r.failed, 0) << r.failed << " of " << r.ran << " cases failed; first: "
                         << (r.failures.empty() ? "" : r.failures.front());
  for (size_t i = 1; i < r.failures.size() && i < 5; ++i) ADD_FAILURE() << r.failures[i];
}

// `c` completed from `seed`, then `adjust` (shapes the table does not draw), passes on every backend.
template <class Adjust>
void expect_case_passes(Case c, uint64_t seed, Adjust adjust, const std::vector<Backend>& backends) {
  c = complete(c, seed);
  adjust(c);
  ASSERT_FALSE(backends.empty());
  for (const Backend& backend : backends) {
    const CaseResult r = check_case(c, backend);
    EXPECT_TRUE(r.ran && r.passed) << backend.name << ": " << c.describe() << ": " << r.failures
                                   << " failures; first: " << r.first_failure;
  }
}

// The case's head size; rotary_dim 0: all of it.
inline void set_head_dim(Case& c, int64_t head_dim, int64_t rotary_dim = 0) {
  c.spec.head_dim = head_dim;
  c.spec.rotary_dim = rotary_dim ? rotary_dim : head_dim;
}

}  // namespace ropekit::cases
