// Fuzz target 3: the HF config.json reader on arbitrary bytes. Bad input must raise ropekit::Error
// (nlohmann's exceptions, std::bad_variant_access, ... escaping would abort the run); an accepted
// config gives a valid spec that builds a small table with finite values.
#include <cmath>
#include <string_view>

#include "fuzz_common.hpp"
#include "ropekit/hf_config.hpp"
#include "ropekit/ropekit.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  try {
    const ropekit::RopeSpec spec = ropekit::spec_from_hf_config_json(json);
    (void)spec.describe();
    if (spec.pairs() <= 1024) {
      const ropekit::RopeTable table(spec, 8);
      for (float v : table.rows())
        if (!std::isfinite(v)) ropekit_fuzz::violated("an accepted config gives a finite table");
    }
  } catch (const ropekit::Error&) {
  }
  try {
    const ropekit::HfConfigInfo info = ropekit::hf_config_info_json(json);
    (void)info.spec.describe();
  } catch (const ropekit::Error&) {
  }
  return 0;
}
