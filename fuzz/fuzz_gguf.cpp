// Fuzz target 4: the GGUF metadata reader on arbitrary bytes. Bad input must raise ropekit::Error
// (anything else escaping, a sanitizer report, a hang or an allocation past the RSS limit fails the
// run); an accepted file gives valid specs that build a small table with finite values.
#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_common.hpp"
#include "ropekit/gguf.hpp"
#include "ropekit/ropekit.hpp"

namespace {

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (8 * i));
  return s;
}

void check_table(const ropekit::RopeSpec& spec) {
  (void)spec.describe();
  if (spec.pairs() > 1024) return;
  const ropekit::RopeTable table(spec, 8);
  for (float v : table.rows())
    if (!std::isfinite(v)) ropekit_fuzz::violated("an accepted GGUF gives a finite table");
}

}  // namespace

// Headers whose counts and lengths claim far more than the bytes hold: each must be a quick
// ropekit::Error, not an allocation or a loop over the claimed size.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const std::string header = std::string("GGUF") + std::string("\x03\0\0\0", 4);
  const std::string inputs[] = {
      header + le64(0) + le64(~uint64_t{0}),                                           // key/value count 2^64 - 1
      header + le64(~uint64_t{0}) + le64(0),                                           // tensor count 2^64 - 1
      header + le64(0) + le64(1) + le64(uint64_t{1} << 62) + std::string(64, 'k'),     // a key of 2^62 bytes
      header + le64(0) + le64(1) + le64(1) + "k" + std::string("\x09\0\0\0\x08\0\0\0", 8) +
          le64(uint64_t{1} << 60) + std::string(64, '\0'),                           // 2^60 strings
  };
  for (const std::string& bytes : inputs) {
    try {
      (void)ropekit::gguf_rope_info_bytes(bytes);
      ropekit_fuzz::violated("a GGUF header whose counts pass the file size is an error");
    } catch (const ropekit::Error&) {
    }
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  try {
    const ropekit::GgufRopeInfo info = ropekit::gguf_rope_info_bytes(bytes);
    check_table(info.spec);
    if (info.swa_spec) check_table(*info.swa_spec);
    if (info.architecture.empty()) ropekit_fuzz::violated("an accepted GGUF names its architecture");
  } catch (const ropekit::Error&) {
  }
  return 0;
}
