// Presets: each equals its tests/data config.json, and its inv_freq / attention factor match HF's
// published formulas, written out again here in float64 (not ropekit's frequency functions).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numbers>

#include "presets.hpp"
#include "ropekit/frequencies.hpp"
#include "ropekit/hf_config.hpp"

namespace {

using ropekit::cli::Preset;
using ropekit::cli::presets;

std::filesystem::path config_path(const Preset& p) {
  return std::filesystem::path(ROPEKIT_TEST_DATA) / "configs" / (p.name + ".json");
}

// --- HF transformers' formulas (modeling_rope_utils.py), float64 --------------------------------

// torch: base ** (torch.arange(0, dim, 2).float() / dim): the exponent is a float32 quotient.
std::vector<double> hf_default(int64_t dim, double base) {
  std::vector<double> out;
  for (int64_t i = 0; i < dim; i += 2) {
    const float exponent = static_cast<float>(i) / static_cast<float>(dim);
    out.push_back(1.0 / std::pow(base, static_cast<double>(exponent)));
  }
  return out;
}

std::vector<double> hf_llama3(const ropekit::scaling::Llama3& s, int64_t dim, double base) {
  auto inv = hf_default(dim, base);
  const double old_context = static_cast<double>(s.original_max);
  const double low_wavelen = old_context / s.low_freq_factor, high_wavelen = old_context / s.high_freq_factor;
  for (auto& f : inv) {
    const double wavelen = 2 * std::numbers::pi / f;
    const double scaled = wavelen > low_wavelen ? f / s.factor : f;
    const double smooth = (old_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
    const double smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
    const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
    f = medium ? smoothed : scaled;
  }
  return inv;
}

double hf_correction_dim(double rotations, double dim, double base, double max_pos) {
  return (dim * std::log(max_pos / (rotations * 2 * std::numbers::pi))) / (2 * std::log(base));
}

std::vector<double> hf_yarn(const ropekit::scaling::Yarn& s, int64_t dim, double base) {
  std::vector<double> pos_freqs;
  for (int64_t i = 0; i < dim; i += 2)
    pos_freqs.push_back(std::pow(base, static_cast<double>(static_cast<float>(i) / static_cast<float>(dim))));
  const double d = static_cast<double>(dim);
  double low = hf_correction_dim(s.beta_fast, d, base, static_cast<double>(s.original_max));
  double high = hf_correction_dim(s.beta_slow, d, base, static_cast<double>(s.original_max));
  if (s.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, d - 1);
  if (low == high) high += 0.001;
  std::vector<double> out;
  for (size_t i = 0; i < pos_freqs.size(); ++i) {
    const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
    const double extrapolation_factor = 1 - ramp;
    const double extrapolation = 1.0 / pos_freqs[i];
    const double interpolation = 1.0 / (s.factor * pos_freqs[i]);
    out.push_back(interpolation * (1 - extrapolation_factor) + extrapolation * extrapolation_factor);
  }
  return out;
}

double hf_mscale(double scale, double m = 1.0) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; }

double hf_yarn_attention(const ropekit::scaling::Yarn& s) {
  if (s.attention_factor) return *s.attention_factor;
  if (s.mscale && s.mscale_all_dim && *s.mscale != 0 && *s.mscale_all_dim != 0)
    return hf_mscale(s.factor, *s.mscale) / hf_mscale(s.factor, *s.mscale_all_dim);
  return hf_mscale(s.factor);
}

std::vector<double> hf_longrope(const ropekit::scaling::LongRope& s, int64_t dim, double base, int64_t seq_len) {
  const auto& ext = seq_len > s.original_max ? s.long_factor : s.short_factor;
  std::vector<double> out;
  for (int64_t i = 0; i < dim; i += 2) {
    const float exponent = static_cast<float>(i) / static_cast<float>(dim);
    out.push_back(1.0 / (ext[static_cast<size_t>(i / 2)] * std::pow(base, static_cast<double>(exponent))));
  }
  return out;
}

double hf_longrope_attention(const ropekit::scaling::LongRope& s) {
  if (s.attention_factor) return *s.attention_factor;
  if (s.factor <= 1.0) return 1.0;
  return std::sqrt(1 + std::log(s.factor) / std::log(static_cast<double>(s.original_max)));
}

struct Expected {
  std::vector<double> inv_freq;
  double attention = 1.0;
};

Expected hf_expected(const ropekit::RopeSpec& spec, int64_t seq_len) {
  const int64_t dim = spec.rotary_dim();
  const double base = spec.base();
  if (const auto* s = std::get_if<ropekit::scaling::Llama3>(&spec.scaling())) return {hf_llama3(*s, dim, base), 1.0};
  if (const auto* s = std::get_if<ropekit::scaling::Yarn>(&spec.scaling()))
    return {hf_yarn(*s, dim, base), hf_yarn_attention(*s)};
  if (const auto* s = std::get_if<ropekit::scaling::LongRope>(&spec.scaling()))
    return {hf_longrope(*s, dim, base, seq_len), hf_longrope_attention(*s)};
  EXPECT_EQ(spec.scaling_name(), "none") << "no HF formula written for this scaling";
  return {hf_default(dim, base), 1.0};
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
    const auto want = hf_expected(spec, seq);
    const auto got = ropekit::inv_freq(spec, seq);
    ASSERT_EQ(got.size(), want.inv_freq.size());
    ASSERT_EQ(static_cast<int64_t>(got.size()), spec.rotary_dim() / 2);
    for (size_t i = 0; i < got.size(); ++i)
      expect_f32_equal(got[i], want.inv_freq[i], p.name + " inv_freq[" + std::to_string(i) + "] seq " + std::to_string(seq));
    expect_f32_equal(ropekit::attention_factor(spec), want.attention, p.name + " attention factor");
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
