// `ropekit verify`: every kernel path this build has (CPU, each CUDA device present), against the
// float64 reference, random inputs.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

#include "check.hpp"
#include "cli.hpp"
#include "half_float.hpp"
#include "check_case.hpp"
#include "ropekit/apply.hpp"
#include "ropekit/table.hpp"
#include "ropekit/frequencies.hpp"

namespace ropekit::cli {
namespace {

using detail::cat;

constexpr int64_t kMaxVerifyElements = int64_t{1} << 24;
// The largest |ln xPos scale| verify uses: with scales in [e^-2, e^2] and inputs of at least 1e-3,
// every pair's norm stays above f16's smallest normal (6.1e-5) and far below its largest.
constexpr double kMaxXposExponent = 2.0;

}  // namespace

int cmd_verify(const std::vector<std::string>& tokens, std::ostream& out) {
  std::set<std::string> values = spec_value_flags();
  values.insert({"tokens", "seed"});
  const Args args(tokens, "verify", values, {});
  const Resolved r = resolve(args, "llama3.1-8b");
  const int64_t seq = args.integer("tokens").value_or(16);
  const uint64_t seed = static_cast<uint64_t>(args.integer("seed").value_or(std::random_device{}()));
  // The largest case: input and output of q and k at the table's largest batch and head counts.
  if (const int64_t n = 2 * cases::kMaxCaseBatch * seq * (cases::kMaxCaseQHeads + cases::kMaxCaseKHeads) * r.spec.head_dim();
      n > kMaxVerifyElements)
    throw UsageError("--tokens: expected at most " + std::to_string(kMaxVerifyElements) +
                     " q and k elements in the largest case (2 x batch 3 x tokens x (4 + 3 heads) x head_dim), got " +
                     std::to_string(n));
  if (r.spec.xpos()) {
    // xPos scales zeta_i^(+-(p - center) / scale_base) grow exponentially with the distance from the
    // center (each case centers on its positions): the requested tokens must fit around it.
    double most = 0.0;
    for (double z : xpos_zeta(r.spec)) most = std::max(most, std::fabs(std::log(z)) / r.spec.xpos()->scale_base);
    const auto reach = static_cast<int64_t>(std::min(kMaxXposExponent / most, 1e9));
    if (seq - 1 > 2 * reach)
      throw UsageError(cat("--tokens: expected at most ", 2 * reach + 1, " tokens with xPos scale_base ",
                           r.spec.xpos()->scale_base, " (scales within e^+-", kMaxXposExponent, "), got ", seq));
  }
  out << "verify " << (r.source == "flags" ? "flags" : r.source + " " + r.name) << ": " << r.spec.describe() << "\n";
  out << "the shared case table (src/cases) for this spec, both styles, " << seq << " tokens per sequence";
  if (r.spec.xpos()) out << ", xPos center in the middle of each case's positions";
  out << "; seed " << seed << "; reference: float64 (src/cases/reference64.hpp)\n";
  const auto table = cases::case_table({.seed = seed, .random_draws = 16, .spec = r.spec.params(), .tokens = seq});
  int passed = 0, total = 0;
  std::vector<cases::Backend> backends = cases::cpu_backends();
  for (cases::Backend& b : cases::cuda_backends()) backends.push_back(std::move(b));
  for (const cases::Backend& backend : backends) {
    const cases::TableResult result = cases::run_table(table, backend);
    total += static_cast<int>(result.ran);
    passed += static_cast<int>(result.ran - result.failed);
    out << (result.failed == 0 ? "PASS" : "FAIL") << "  " << backend.name << "  " << result.ran - result.failed << "/"
        << result.ran << " cases" << (backend.agrees_with_scalar ? " (and within one ulp of the scalar loop)" : "") << "\n";
    for (const std::string& f : result.failures) out << "  " << f << "\n";
  }
  out << passed << "/" << total << " cases passed on " << backends.size() << " paths\n";
  return passed == total ? 0 : 1;
}

}  // namespace ropekit::cli
