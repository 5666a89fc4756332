#pragma once
// RoPE-relevant numbers of published model configs, built into the binary. Each preset also exists
// as a realistic config.json under tests/data/configs/<name>.json (tests check they agree); the
// presets of models whose RoPE differs per layer are that file itself (Preset::config_json).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ropekit/spec.hpp"

namespace ropekit::cli {

struct Preset {
  std::string name;    // what `ropekit info <name>` takes, e.g. "llama3.1-8b"
  std::string model;   // the published checkpoint, e.g. "meta-llama/Llama-3.1-8B"
  std::string source;  // where the numbers come from
  SpecParams params;
  int64_t max_position_embeddings = 0;
  int64_t num_attention_heads = 0;  // q heads
  int64_t num_key_value_heads = 0;  // k heads
  // Non-empty: the preset is this config.json (built in from tests/data/configs/<name>.json) and the
  // fields above are what the config reader makes of it (its first layer with RoPE).
  std::string_view config_json;

  RopeSpec spec() const { return RopeSpec(params); }
};

const std::vector<Preset>& presets();
// nullptr when no preset has that name.
const Preset* find_preset(std::string_view name);

}  // namespace ropekit::cli
