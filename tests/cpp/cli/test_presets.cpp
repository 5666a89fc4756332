// Presets: each equals its tests/data config.json, and its inv_freq / attention factor match HF's
// published formulas (src/cases/hf_formulas.hpp, float64, not ropekit's frequency functions).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "hf_formulas.hpp"
#include "presets.hpp"
#include "ropekit/frequencies.hpp"
#include "ropekit/hf_config.hpp"

namespace {

using ropekit::cli::Preset;
using ropekit::cli::presets;

std::filesystem::path config_path(const Preset& p) {
  return std::filesystem::path(ROPEKIT_TEST_DATA) / "configs" / (p.name + ".json");
}

// Equal after rounding to float32, allowing 1 ulp for a different order of double operations.
void expect_f32_equal(double got, double want, const std::string& what) {
  const float g = static_cast<float>(got), w = static_cast<float>(want);
  EXPECT_LE(std::fabs(g - w), std::nextafter(std::fabs(w), INFINITY) - std::fabs(w)) << what << ": " << g << " vs " << w;
}

}  // namespace

namespace ropekit::cli {
// Test names show the preset's name instead of its bytes.
void PrintTo(const Preset& p, std::ostream* os) { *os << p.name; }
}  // namespace ropekit::cli

namespace {

class PresetTest : public ::testing::TestWithParam<Preset> {};

TEST_P(PresetTest, EqualsItsConfigJson) {
  const Preset& p = GetParam();
  ASSERT_TRUE(std::filesystem::exists(config_path(p))) << config_path(p);
  const auto info = ropekit::hf_config_info(config_path(p));
  const auto spec = p.spec();
  EXPECT_EQ(info.spec.describe(), spec.describe());
  EXPECT_EQ(info.spec.head_dim(), spec.head_dim());
  EXPECT_EQ(info.spec.rotary_dim(), spec.rotary_dim());
  EXPECT_EQ(info.spec.base(), spec.base());
  EXPECT_EQ(info.spec.style(), spec.style());
  EXPECT_EQ(info.spec.scaling().index(), spec.scaling().index());
  EXPECT_EQ(info.max_position_embeddings, p.max_position_embeddings);
  EXPECT_EQ(info.num_attention_heads, p.num_attention_heads);
  EXPECT_EQ(info.num_key_value_heads, p.num_key_value_heads);
  if (const auto* lr = std::get_if<ropekit::scaling::LongRope>(&spec.scaling())) {
    const auto& read = std::get<ropekit::scaling::LongRope>(info.spec.scaling());
    EXPECT_EQ(read.short_factor, lr->short_factor);
    EXPECT_EQ(read.long_factor, lr->long_factor);
    EXPECT_EQ(lr->short_factor.size(), 48u);
  }
  for (int64_t seq : {int64_t{1024}, p.max_position_embeddings}) {
    EXPECT_EQ(ropekit::inv_freq(info.spec, seq), ropekit::inv_freq(spec, seq));
  }
  EXPECT_EQ(ropekit::attention_factor(info.spec), ropekit::attention_factor(spec));
}

TEST_P(PresetTest, MatchesHfFormulas) {
  const Preset& p = GetParam();
  const auto spec = p.spec();
  for (int64_t seq : {int64_t{1024}, p.max_position_embeddings}) {
    const auto want = hf::inv_freq(spec, seq);
    const auto got = ropekit::inv_freq(spec, seq);
    ASSERT_EQ(got.size(), want.size());
    ASSERT_EQ(static_cast<int64_t>(got.size()), spec.rotary_dim() / 2);
    for (size_t i = 0; i < got.size(); ++i)
      expect_f32_equal(got[i], want[i], p.name + " inv_freq[" + std::to_string(i) + "] seq " + std::to_string(seq));
    expect_f32_equal(ropekit::attention_factor(spec), hf::attention(spec), p.name + " attention factor");
  }
}

// The hand-written presets; the others are their config.json (Preset::config_json), tested per layer
// against transformers in tests/python/test_model_rope.py.
std::vector<Preset> hand_written_presets() {
  std::vector<Preset> out;
  for (const auto& p : presets())
    if (p.config_json.empty()) out.push_back(p);
  return out;
}

INSTANTIATE_TEST_SUITE_P(All, PresetTest, ::testing::ValuesIn(hand_written_presets()), [](const auto& info) {
  std::string name = info.param.name;
  std::replace_if(name.begin(), name.end(), [](char c) { return !std::isalnum(static_cast<unsigned char>(c)); }, '_');
  return name;
});

TEST(Presets, KnownNumbers) {
  // Values quoted in papers / model cards, as literals.
  const auto* qwen = ropekit::cli::find_preset("qwen2.5-7b-instruct-yarn");
  ASSERT_NE(qwen, nullptr);
  EXPECT_NEAR(ropekit::attention_factor(qwen->spec()), 0.1 * std::log(4.0) + 1.0, 1e-12);
  EXPECT_NEAR(ropekit::attention_factor(qwen->spec()), 1.1386294361, 1e-9);
  const auto* phi = ropekit::cli::find_preset("phi3-mini-128k");
  ASSERT_NE(phi, nullptr);
  EXPECT_NEAR(ropekit::attention_factor(phi->spec()), std::sqrt(1.0 + 5.0 / 12.0), 1e-12);  // ln 32 / ln 4096 = 5/12
  const auto* deepseek = ropekit::cli::find_preset("deepseek-v2-lite");
  ASSERT_NE(deepseek, nullptr);
  EXPECT_DOUBLE_EQ(ropekit::attention_factor(deepseek->spec()), 1.0);  // mscale == mscale_all_dim
  EXPECT_EQ(deepseek->spec().style(), ropekit::Style::interleaved);
  EXPECT_EQ(ropekit::cli::find_preset("gpt-neox-20b")->spec().rotary_dim(), 24);
  EXPECT_EQ(ropekit::cli::find_preset("no-such-model"), nullptr);
}

TEST(Presets, EveryConfigFileIsAPreset) {
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::filesystem::path(ROPEKIT_TEST_DATA) / "configs")) {
    ++files;
    EXPECT_NE(ropekit::cli::find_preset(entry.path().stem().string()), nullptr) << entry.path();
  }
  EXPECT_EQ(files, static_cast<int>(presets().size()));
  EXPECT_GE(presets().size(), 12u);
}

}  // namespace
