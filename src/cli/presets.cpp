// Built-in presets. Numbers are the RoPE-relevant fields of each model's published config.json on
// the HuggingFace Hub (the file named in `source`); tests/data/configs/<name>.json holds a copy of
// those configs and tests/cpp/cli checks that reading it gives exactly the preset's spec.
#include "presets.hpp"

#include "ropekit/error.hpp"
#include "ropekit/hf_config.hpp"

#include <algorithm>
#include <iterator>
#include <utility>

namespace ropekit::cli {
namespace {

// Phi-3-mini-128k-instruct, first release (April 2024, rope_scaling type "su", i.e. LongRoPE):
// 48 = head_dim 96 / 2 factors each. The same lists ship in Phi-3-vision-128k-instruct's config.
const std::vector<double> kPhi3LongFactor = {
      1.0299999713897705, 1.0499999523162842, 1.0499999523162842, 1.0799999237060547, 1.2299998998641968,
      1.2299998998641968, 1.2999999523162842, 1.4499999284744263, 1.5999999046325684, 1.6499998569488525,
      1.8999998569488525, 2.859999895095825, 3.68999981880188, 5.419999599456787, 5.489999771118164,
      5.489999771118164, 9.09000015258789, 11.579999923706055, 15.65999984741211, 15.769999504089355,
      15.789999961853027, 18.360000610351562, 21.989999771118164, 23.079999923706055, 30.009998321533203,
      32.35000228881836, 32.590003967285156, 35.56000518798828, 39.95000457763672, 53.840003967285156,
      56.20000457763672, 57.95000457763672, 59.29000473022461, 59.77000427246094, 59.920005798339844,
      61.190006256103516, 61.96000671386719, 62.50000762939453, 63.3700065612793, 63.48000717163086,
      63.48000717163086, 63.66000747680664, 63.850006103515625, 64.08000946044922, 64.760009765625,
      64.80001068115234, 64.81001281738281, 64.81001281738281,
};
const std::vector<double> kPhi3ShortFactor = {
      1.05, 1.05, 1.05, 1.1, 1.1, 1.1, 1.2500000000000002, 1.2500000000000002, 1.4000000000000004,
      1.4500000000000004, 1.5500000000000005, 1.8500000000000008, 1.9000000000000008, 2.000000000000001,
      2.000000000000001, 2.000000000000001, 2.000000000000001, 2.000000000000001, 2.000000000000001,
      2.000000000000001, 2.000000000000001, 2.000000000000001, 2.000000000000001, 2.000000000000001,
      2.000000000000001, 2.000000000000001, 2.000000000000001, 2.000000000000001, 2.000000000000001,
      2.000000000000001, 2.000000000000001, 2.000000000000001, 2.1000000000000005, 2.1000000000000005, 2.2,
      2.3499999999999996, 2.3499999999999996, 2.3499999999999996, 2.3499999999999996, 2.3999999999999995,
      2.3999999999999995, 2.6499999999999986, 2.6999999999999984, 2.8999999999999977, 2.9499999999999975,
      3.049999999999997, 3.049999999999997, 3.049999999999997,
};

std::vector<Preset> build() {
  using namespace scaling;
  std::vector<Preset> out;
  // name, model, source, {head_dim, rotary_dim, base, style, scaling}, max positions, q heads, k heads
  out.push_back({"llama2-7b", "meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-7b-hf config.json (no rope_theta: 10000)",
                 {.head_dim = 128, .rotary_dim = 128, .base = 10000.0}, 4096, 32, 32});
  out.push_back({"llama3-8b", "meta-llama/Meta-Llama-3-8B", "meta-llama/Meta-Llama-3-8B config.json",
                 {.head_dim = 128, .rotary_dim = 128, .base = 500000.0}, 8192, 32, 8});
  out.push_back({"llama3.1-8b", "meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B config.json (rope_type llama3)",
                 {.head_dim = 128, .rotary_dim = 128, .base = 500000.0,
                  .scaling = Llama3{.factor = 8.0, .low_freq_factor = 1.0, .high_freq_factor = 4.0, .original_max = 8192}},
                 131072, 32, 8});
  out.push_back({"llama3.2-1b", "meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-1B config.json (rope_type llama3, factor 32)",
                 {.head_dim = 64, .rotary_dim = 64, .base = 500000.0,
                  .scaling = Llama3{.factor = 32.0, .low_freq_factor = 1.0, .high_freq_factor = 4.0, .original_max = 8192}},
                 131072, 32, 8});
  out.push_back({"mistral-7b-v0.1", "mistralai/Mistral-7B-v0.1", "mistralai/Mistral-7B-v0.1 config.json",
                 {.head_dim = 128, .rotary_dim = 128, .base = 10000.0}, 32768, 32, 8});
  // Qwen's model card: add {"factor": 4.0, "original_max_position_embeddings": 32768, "type": "yarn"}
  // to config.json for inputs past 32768 tokens (max_position_embeddings stays 32768).
  out.push_back({"qwen2.5-7b-instruct-yarn", "Qwen/Qwen2.5-7B-Instruct",
                 "Qwen/Qwen2.5-7B-Instruct config.json + the model card's YaRN x4 rope_scaling",
                 {.head_dim = 128, .rotary_dim = 128, .base = 1000000.0,
                  .scaling = Yarn{.factor = 4.0, .original_max = 32768}},
                 32768, 28, 4});
  // DeepSeek-V2 (MLA) rotates only the qk_rope_head_dim = 64 slice of each head, with interleaved
  // pairs (its apply_rotary_pos_emb de-interleaves before rotate_half, i.e. pairs (2i, 2i+1)).
  out.push_back({"deepseek-v2-lite", "deepseek-ai/DeepSeek-V2-Lite", "deepseek-ai/DeepSeek-V2-Lite config.json (yarn, mscale 0.707)",
                 {.head_dim = 64, .rotary_dim = 64, .base = 10000.0, .style = Style::interleaved,
                  .scaling = Yarn{.factor = 40.0, .original_max = 4096, .beta_fast = 32.0, .beta_slow = 1.0,
                                  .mscale = 0.707, .mscale_all_dim = 0.707}},
                 163840, 16, 16});
  out.push_back({"phi3-mini-128k", "microsoft/Phi-3-mini-128k-instruct",
                 "microsoft/Phi-3-mini-128k-instruct config.json (LongRoPE, original_max_position_embeddings 4096)",
                 {.head_dim = 96, .rotary_dim = 96, .base = 10000.0,
                  .scaling = LongRope{.short_factor = kPhi3ShortFactor, .long_factor = kPhi3LongFactor,
                                      .original_max = 4096, .factor = 131072.0 / 4096.0}},
                 131072, 32, 32});
  out.push_back({"gpt-neox-20b", "EleutherAI/gpt-neox-20b", "EleutherAI/gpt-neox-20b config.json (rotary_pct 0.25)",
                 {.head_dim = 96, .rotary_dim = 24, .base = 10000.0}, 2048, 64, 64});
  out.push_back({"gpt-j-6b", "EleutherAI/gpt-j-6b", "EleutherAI/gpt-j-6b config.json (rotary_dim 64, rotate_every_two)",
                 {.head_dim = 256, .rotary_dim = 64, .base = 10000.0, .style = Style::interleaved}, 2048, 16, 16});
  out.push_back({"codellama-7b", "codellama/CodeLlama-7b-hf", "codellama/CodeLlama-7b-hf config.json (rope_theta 1e6)",
                 {.head_dim = 128, .rotary_dim = 128, .base = 1000000.0}, 16384, 32, 32});
  out.push_back({"gemma-7b", "google/gemma-7b", "google/gemma-7b config.json (head_dim 256)",
                 {.head_dim = 256, .rotary_dim = 256, .base = 10000.0}, 8192, 16, 16});

  struct Embedded {
    std::string_view name, json;
  };
  static constexpr Embedded embedded[] = {
#include "config_presets.inc"
  };
  const std::pair<std::string_view, std::string_view> models[] = {
      {"gemma3-27b", "google/gemma-3-27b-it"},
      {"gemma4-31b", "google/gemma-4-31B-it"},
      {"llama4-scout-17b-16e", "meta-llama/Llama-4-Scout-17B-16E"},
      {"qwen3-8b", "Qwen/Qwen3-8B"},
      {"qwen3-30b-a3b", "Qwen/Qwen3-30B-A3B"},
      {"gpt-oss-20b", "openai/gpt-oss-20b"},
      {"deepseek-v3", "deepseek-ai/DeepSeek-V3"},
      {"phi4-mini", "microsoft/Phi-4-mini-instruct"},
      {"ministral3-8b", "mistralai/Ministral-3-8B-Instruct-2512"},
      {"smollm3-3b", "HuggingFaceTB/SmolLM3-3B"},
      {"cohere2-command-r7b", "CohereLabs/c4ai-command-r7b-12-2024"},
      {"qwen3-next-80b-a3b", "Qwen/Qwen3-Next-80B-A3B-Instruct"},
      {"qwen2.5-vl-7b", "Qwen/Qwen2.5-VL-7B-Instruct"},
      {"qwen3-vl-8b", "Qwen/Qwen3-VL-8B-Instruct"},
  };
  static_assert(std::size(embedded) == std::size(models), "src/cli/CMakeLists.txt and this table list the same presets");
  for (const auto& [name, model] : models) {
    const auto it = std::find_if(std::begin(embedded), std::end(embedded), [&](const Embedded& e) { return e.name == name; });
    if (it == std::end(embedded)) throw Error("preset " + std::string(name) + ": not built in (src/cli/CMakeLists.txt)");
    const HfConfigInfo info = hf_config_info_json(it->json);
    out.push_back({std::string(name), std::string(model), "tests/data/configs/" + std::string(name) + ".json (built in)",
                   info.spec.params(), info.max_position_embeddings.value_or(0), info.num_attention_heads.value_or(0),
                   info.num_key_value_heads.value_or(0), it->json});
  }
  return out;
}

}  // namespace

const std::vector<Preset>& presets() {
  static const std::vector<Preset> all = build();
  return all;
}

const Preset* find_preset(std::string_view name) {
  for (const auto& p : presets())
    if (p.name == name) return &p;
  return nullptr;
}

}  // namespace ropekit::cli
