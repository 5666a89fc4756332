#pragma once
// Argument checks that throw ropekit::Error with "<what>: expected <expected>, got <value>".
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>

#include "ropekit/error.hpp"

namespace ropekit::detail {

// Shortest text that reads back as the same double ("0.1", "500000", "nan").
inline std::string format_double(double value) {
  // Whole numbers in full ("500000", not to_chars' shorter "5e+05"): bases and lengths read as written.
  if (std::isfinite(value) && value == std::trunc(value) && std::fabs(value) < 1e15)
    return std::to_string(static_cast<long long>(value));
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, result.ptr);
}

template <typename Part>
void append(std::ostringstream& out, const Part& part) {
  if constexpr (std::is_floating_point_v<Part>) {
    out << format_double(static_cast<double>(part));
  } else {
    out << part;
  }
}

template <typename... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream out;
  (append(out, parts), ...);
  return out.str();
}

template <typename Value>
[[noreturn]] void fail(const std::string& what, const std::string& expected, const Value& got) {
  throw Error(cat(what, ": expected ", expected, ", got ", got));
}

// The require_* checks take `what` as a view: a literal name longer than the short-string buffer
// would otherwise allocate on every call, failing or not.
inline void require(bool ok, std::string_view what, const std::string& expected, const std::string& got) {
  if (!ok) fail(std::string(what), expected, got);
}

inline void require_finite_positive(double value, std::string_view what) {
  if (!std::isfinite(value) || value <= 0) fail(std::string(what), "a finite number > 0", value);
}

inline void require_finite_at_least(double value, double least, std::string_view what) {
  if (!std::isfinite(value) || value < least) fail(std::string(what), cat("a finite number >= ", least), value);
}

inline void require_finite(double value, std::string_view what) {
  if (!std::isfinite(value)) fail(std::string(what), "a finite number", value);
}

// Every element read or written as its own type: the address a multiple of its size. The check and
// the failure are apart so that callers build the names of what they check only when it fails.
inline bool aligned_to(const void* data, int64_t element_size) {
  return reinterpret_cast<uintptr_t>(data) % static_cast<uintptr_t>(element_size) == 0;
}

[[noreturn]] inline void fail_misaligned(const void* data, int64_t element_size, const std::string& what,
                                         const std::string& type) {
  char hex[32];
  std::snprintf(hex, sizeof hex, "%#jx", static_cast<uintmax_t>(reinterpret_cast<uintptr_t>(data)));
  fail(what, cat("an address aligned to ", element_size, " bytes (the ", type, " element size)"), hex);
}

}  // namespace ropekit::detail
