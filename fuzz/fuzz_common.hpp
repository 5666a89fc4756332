#pragma once
// Helpers shared by the fuzz targets: numbers that stress checks (NaN, inf, huge, negative,
// denormal, boundaries) mixed with plain small values.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace ropekit_fuzz {

inline double nasty_double(FuzzedDataProvider& in, double lo, double hi) {
  constexpr double inf = std::numeric_limits<double>::infinity();
  static constexpr double special[] = {std::numeric_limits<double>::quiet_NaN(), inf, -inf, 0.0, -0.0,
                                       std::numeric_limits<double>::denorm_min(), 1e-310,
                                       std::numeric_limits<double>::min(), std::numeric_limits<double>::max(),
                                       -1.0, 1.0, 1.0000000001, 0.5, 2.0, 1e-300, 1e300, 3.4e38, 1e-45};
  switch (in.ConsumeIntegralInRange<int>(0, 3)) {
    case 0: return special[in.ConsumeIntegralInRange<size_t>(0, std::size(special) - 1)];
    case 1: return in.ConsumeFloatingPoint<double>();  // any bits, incl. NaN payloads
    default: return in.ConsumeFloatingPointInRange<double>(lo, hi);
  }
}

inline int64_t nasty_int(FuzzedDataProvider& in, int64_t lo, int64_t hi) {
  static constexpr int64_t special[] = {std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::min(),
                                        std::numeric_limits<int64_t>::max() - 1, int64_t{1} << 31,
                                        (int64_t{1} << 31) - 1, int64_t{1} << 32, int64_t{1} << 62, -1, 0, 1,
                                        std::numeric_limits<int32_t>::max(), std::numeric_limits<int32_t>::min()};
  switch (in.ConsumeIntegralInRange<int>(0, 5)) {
    case 0: return special[in.ConsumeIntegralInRange<size_t>(0, std::size(special) - 1)];
    case 1: return in.ConsumeIntegral<int64_t>();
    default: return in.ConsumeIntegralInRange<int64_t>(lo, hi);
  }
}

// A broken invariant: print it and abort so libFuzzer saves the input.
[[noreturn]] inline void violated(const char* what) {
  std::fprintf(stderr, "ropekit fuzz invariant violated: %s\n", what);
  std::abort();
}

}  // namespace ropekit_fuzz
