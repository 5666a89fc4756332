// Fuzz target 3: the HF config.json reader on arbitrary bytes. Bad input must raise ropekit::Error
// (nlohmann's exceptions, std::bad_variant_access, ... escaping would abort the run); an accepted
// config gives a valid spec that builds a small table with finite values.
#include <cmath>
#include <string>
#include <string_view>

#include "fuzz_common.hpp"
#include "ropekit/hf_config.hpp"
#include "ropekit/ropekit.hpp"

// Inputs too big for the corpus, run once at start: 100k levels of nesting (which overflowed the
// stack when printed in an error) and one byte past the size limit must be ropekit::Errors.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const std::string deep = R"({"hidden_size": 64, "num_attention_heads": 1, "rope_scaling": {"rope_type": )" +
                           std::string(100000, '[') + std::string(100000, ']') + "}}";
  std::string huge = R"({"hidden_size": 64, "num_attention_heads": 1})";
  huge.append(ropekit::kMaxConfigBytes + 1 - huge.size(), ' ');
  const std::string* texts[] = {&deep, &huge};
  for (const std::string* text : texts) {
    try {
      (void)ropekit::spec_from_hf_config_json(*text);
      ropekit_fuzz::violated("a config nested past kMaxJsonDepth or longer than kMaxConfigBytes is an error");
    } catch (const ropekit::Error&) {
    }
  }
  return 0;
}

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
