// HF config.json reader: the HF rules it follows, and one-line errors that name the JSON path.
#include <gtest/gtest.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <string>

#include "ropekit/error.hpp"
#include "ropekit/frequencies.hpp"
#include "ropekit/hf_config.hpp"

namespace {

using ropekit::hf_config_info_json;
using ropekit::spec_from_hf_config_json;

const char* kLlamaBase = R"("hidden_size": 4096, "num_attention_heads": 32, "max_position_embeddings": 8192)";

std::string config(const std::string& extra) { return std::string("{") + kLlamaBase + (extra.empty() ? "" : ", " + extra) + "}"; }

TEST(HfConfig, PlainLlama) {
  const auto info = hf_config_info_json(config(R"("rope_theta": 500000.0, "num_key_value_heads": 8, "model_type": "llama")"));
  EXPECT_EQ(info.spec.head_dim(), 128);
  EXPECT_EQ(info.spec.rotary_dim(), 128);
  EXPECT_DOUBLE_EQ(info.spec.base(), 500000.0);
  EXPECT_EQ(info.spec.style(), ropekit::Style::half);
  EXPECT_EQ(info.spec.scaling_name(), "none");
  EXPECT_EQ(info.max_position_embeddings, 8192);
  EXPECT_EQ(info.model_type, "llama");
  EXPECT_EQ(info.num_attention_heads, 32);
  EXPECT_EQ(info.num_key_value_heads, 8);
}

TEST(HfConfig, DefaultsThetaTo10000AndKvHeadsToQHeads) {
  const auto info = hf_config_info_json(config(""));
  EXPECT_DOUBLE_EQ(info.spec.base(), 10000.0);
  EXPECT_EQ(info.num_key_value_heads, 32);
}

TEST(HfConfig, ExplicitHeadDimWins) {
  const auto spec = spec_from_hf_config_json(R"({"hidden_size": 3072, "num_attention_heads": 16, "head_dim": 256})");
  EXPECT_EQ(spec.head_dim(), 256);
}

TEST(HfConfig, PartialRotaryTruncatesLikeHf) {
  // HF: dim = int(head_dim * partial_rotary_factor); 128 * 0.3 = 38.4 -> 38.
  EXPECT_EQ(spec_from_hf_config_json(config(R"("partial_rotary_factor": 0.3)")).rotary_dim(), 38);
  EXPECT_EQ(spec_from_hf_config_json(config(R"("partial_rotary_factor": 0.5)")).rotary_dim(), 64);
  // GPT-NeoX spells it rotary_pct and theta rotary_emb_base.
  const auto neox = spec_from_hf_config_json(
      R"({"hidden_size": 6144, "num_attention_heads": 64, "rotary_pct": 0.25, "rotary_emb_base": 10000})");
  EXPECT_EQ(neox.head_dim(), 96);
  EXPECT_EQ(neox.rotary_dim(), 24);
}

TEST(HfConfig, GptjIsInterleavedWithAbsoluteRotaryDim) {
  const auto info = hf_config_info_json(
      R"({"model_type": "gptj", "n_embd": 4096, "n_head": 16, "n_positions": 2048, "rotary_dim": 64})");
  EXPECT_EQ(info.spec.head_dim(), 256);
  EXPECT_EQ(info.spec.rotary_dim(), 64);
  EXPECT_EQ(info.spec.style(), ropekit::Style::interleaved);
  EXPECT_EQ(info.max_position_embeddings, 2048);
  EXPECT_EQ(info.num_attention_heads, 16);
}

TEST(HfConfig, DeepseekRotatesTheRopeSliceInterleavedUnlessTold) {
  const std::string base = R"("model_type": "deepseek_v3", "hidden_size": 7168, "num_attention_heads": 128, "qk_rope_head_dim": 64)";
  EXPECT_EQ(spec_from_hf_config_json("{" + base + "}").style(), ropekit::Style::interleaved);
  EXPECT_EQ(spec_from_hf_config_json("{" + base + "}").head_dim(), 64);
  EXPECT_EQ(spec_from_hf_config_json("{" + base + R"(, "rope_interleave": false})").style(), ropekit::Style::half);
}

TEST(HfConfig, YarnExplicitFactorWinsOverMaxPositionRatio) {
  // Qwen2.5's documented YaRN block keeps max_position_embeddings at 32768: factor stays 4 (HF >= 4.5x).
  const auto spec = spec_from_hf_config_json(
      R"({"hidden_size": 3584, "num_attention_heads": 28, "max_position_embeddings": 32768, "rope_theta": 1000000.0,
          "rope_scaling": {"factor": 4.0, "original_max_position_embeddings": 32768, "type": "yarn"}})");
  const auto& yarn = std::get<ropekit::scaling::Yarn>(spec.scaling());
  EXPECT_DOUBLE_EQ(yarn.factor, 4.0);
  EXPECT_EQ(yarn.original_max, 32768);
  EXPECT_NEAR(ropekit::attention_factor(spec), 1.1386294361, 1e-9);
}

TEST(HfConfig, YarnWithoutFactorUsesMaxPositionRatio) {
  const auto spec = spec_from_hf_config_json(
      R"({"hidden_size": 2048, "num_attention_heads": 16, "max_position_embeddings": 163840,
          "rope_scaling": {"rope_type": "yarn", "original_max_position_embeddings": 4096}})");
  EXPECT_DOUBLE_EQ(std::get<ropekit::scaling::Yarn>(spec.scaling()).factor, 40.0);
}

TEST(HfConfig, YarnWithoutOriginalFallsBackToMaxPositions) {
  const auto spec = spec_from_hf_config_json(config(R"("rope_scaling": {"rope_type": "yarn", "factor": 2.0,
      "beta_fast": 16, "beta_slow": 2, "mscale": 1.0, "mscale_all_dim": 0.5, "attention_factor": 1.25, "truncate": false})"));
  const auto& y = std::get<ropekit::scaling::Yarn>(spec.scaling());
  EXPECT_EQ(y.original_max, 8192);
  EXPECT_DOUBLE_EQ(y.beta_fast, 16);
  EXPECT_DOUBLE_EQ(y.beta_slow, 2);
  EXPECT_EQ(y.mscale, 1.0);
  EXPECT_EQ(y.mscale_all_dim, 0.5);
  EXPECT_EQ(y.attention_factor, 1.25);
  EXPECT_FALSE(y.truncate);
}

TEST(HfConfig, NewerRopeParametersSpelling) {
  // transformers 5 puts rope_theta and the type inside rope_parameters.
  const auto plain = spec_from_hf_config_json(config(R"("rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"})"));
  EXPECT_DOUBLE_EQ(plain.base(), 1000000.0);
  EXPECT_EQ(plain.scaling_name(), "none");
  const auto only_theta = spec_from_hf_config_json(config(R"("rope_parameters": {"rope_theta": 20000.0})"));
  EXPECT_DOUBLE_EQ(only_theta.base(), 20000.0);
  const auto llama3 = spec_from_hf_config_json(config(R"("rope_parameters": {"rope_theta": 500000.0, "rope_type": "llama3",
      "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192,
      "partial_rotary_factor": 0.5})"));
  EXPECT_EQ(llama3.scaling_name(), "llama3");
  EXPECT_EQ(llama3.rotary_dim(), 64);
}

TEST(HfConfig, LinearAndDynamic) {
  const auto linear = spec_from_hf_config_json(config(R"("rope_scaling": {"type": "linear", "factor": 4.0})"));
  EXPECT_DOUBLE_EQ(std::get<ropekit::scaling::Linear>(linear.scaling()).factor, 4.0);
  const auto dynamic = spec_from_hf_config_json(config(R"("rope_scaling": {"rope_type": "dynamic", "factor": 2.0})"));
  const auto& d = std::get<ropekit::scaling::DynamicNtk>(dynamic.scaling());
  EXPECT_DOUBLE_EQ(d.factor, 2.0);
  EXPECT_EQ(d.original_max, 8192);  // HF: dynamic NTK starts growing past max_position_embeddings
}

TEST(HfConfig, LongropeSuAliasAndTopLevelOriginal) {
  std::string factors = "[";
  for (int i = 0; i < 64; ++i) factors += (i ? ", " : "") + std::to_string(1.0 + i * 0.1);
  factors += "]";
  const auto spec = spec_from_hf_config_json(
      R"({"hidden_size": 4096, "num_attention_heads": 32, "max_position_embeddings": 131072,
          "original_max_position_embeddings": 4096, "rope_scaling": {"type": "su", "short_factor": )" +
      factors + R"(, "long_factor": )" + factors + "}}");
  const auto& lr = std::get<ropekit::scaling::LongRope>(spec.scaling());
  EXPECT_EQ(lr.original_max, 4096);
  EXPECT_DOUBLE_EQ(lr.factor, 32.0);
  EXPECT_EQ(lr.short_factor.size(), 64u);
  EXPECT_DOUBLE_EQ(lr.long_factor[10], 2.0);
}

TEST(HfConfig, MissingFileNamesThePath) {
  try {
    ropekit::spec_from_hf_config("/nonexistent/dir/config.json");
    FAIL() << "no error";
  } catch (const ropekit::Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/config.json"), std::string::npos) << e.what();
  }
}

TEST(HfConfig, DirectoryIsNamedNotASyntaxError) {
  const auto dir = std::filesystem::temp_directory_path() / "ropekit_test_config_is_dir";
  std::filesystem::create_directories(dir);
  try {
    ropekit::spec_from_hf_config(dir);
    FAIL() << "no error";
  } catch (const ropekit::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("config path: expected a config.json file, got the directory \"" + dir.string() + "\""),
              std::string::npos)
        << what;
    EXPECT_EQ(what.find("syntax"), std::string::npos) << what;
  }
  std::filesystem::remove_all(dir);
}

// Nesting is counted outside strings; level 64 parses, level 65 is an error, and 100k levels (which
// once overflowed the stack when the value was printed in an error) too.
TEST(HfConfig, NestingDepthIsBounded) {
  auto nested = [](int levels) { return std::string(static_cast<size_t>(levels), '[') + std::string(static_cast<size_t>(levels), ']'); };
  const std::string head = std::string("{") + kLlamaBase + R"(, "extra": )";
  EXPECT_NO_THROW(spec_from_hf_config_json(head + nested(ropekit::kMaxJsonDepth - 1) + "}"));
  EXPECT_NO_THROW(spec_from_hf_config_json(head + R"("[[[[{{{{\"[[[[)" + std::string(1000, '[') + R"("})"));
  for (const std::string& text : {head + nested(ropekit::kMaxJsonDepth) + "}", nested(100000),
                                  config(R"("rope_scaling": {"rope_type": )" + nested(100000) + "}")}) {
    try {
      spec_from_hf_config_json(text);
      FAIL() << "no error at " << text.size() << " bytes";
    } catch (const ropekit::Error& e) {
      EXPECT_NE(std::string(e.what()).find("config: expected JSON nested at most 64 levels deep, got level 65"),
                std::string::npos)
          << e.what();
    }
  }
}

TEST(HfConfig, SizeIsBounded) {
  std::string text = config("");
  text.append(ropekit::kMaxConfigBytes - text.size(), ' ');
  EXPECT_NO_THROW(spec_from_hf_config_json(text));
  text.push_back(' ');
  try {
    spec_from_hf_config_json(text);
    FAIL() << "no error";
  } catch (const ropekit::Error& e) {
    EXPECT_NE(std::string(e.what()).find("config: expected at most 16777216 bytes (16 MiB) of JSON, got 16777217 bytes"),
              std::string::npos)
        << e.what();
  }
  const auto path = std::filesystem::temp_directory_path() / "ropekit_test_huge_config.json";
  {
    std::ofstream out(path, std::ios::binary);
    out << text;
  }
  try {
    ropekit::spec_from_hf_config(path);
    FAIL() << "no error";
  } catch (const ropekit::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("config path: expected a file of at most 16777216 bytes"), std::string::npos) << what;
    EXPECT_NE(what.find(path.string()), std::string::npos) << what;
  }
  std::filesystem::remove(path);
}

TEST(HfConfig, LongValuesAreCutInMessages) {
  std::string list = "[";
  for (int i = 0; i < 100000; ++i) list += (i ? ", " : "") + std::string("\"\u00e9\"");
  list += "]";
  try {
    spec_from_hf_config_json(config(R"("rope_scaling": {"rope_type": "linear", "factor": )" + list + "}"));
    FAIL() << "no error";
  } catch (const ropekit::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("rope_scaling.factor: expected a number >= 1, got [\""), std::string::npos) << what;
    EXPECT_LT(what.size(), 200u) << what.substr(0, 300);
    EXPECT_EQ(what.substr(what.size() - 3), "...");
  }
}

// transformers (4.x knows only rope_scaling; 5.x sets rope_parameters = rope_scaling or
// rope_parameters): a non-empty rope_scaling wins, and a disagreeing rope_parameters is noted.
// M-RoPE: the sections from rope_parameters (HF 5) or rope_scaling (HF 4, type "mrope"), the
// mapping from the model's code as transformers has it, the sections' defaults of that code, and
// mrope_interleaved for other models.
TEST(HfConfig, MRopeSections) {
  const auto qwen2 = spec_from_hf_config_json(
      R"({"model_type": "qwen2_vl", "hidden_size": 1536, "num_attention_heads": 12, "rope_theta": 1000000.0,
          "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}})");
  ASSERT_TRUE(qwen2.mrope());
  EXPECT_EQ(qwen2.mrope()->sections, (std::array<int64_t, 3>{16, 24, 24}));
  EXPECT_FALSE(qwen2.mrope()->interleaved);
  EXPECT_EQ(qwen2.style(), ropekit::Style::half);
  EXPECT_EQ(qwen2.scaling_name(), "none");
  const auto qwen3 = spec_from_hf_config_json(
      R"({"model_type": "qwen3_vl_text", "head_dim": 128, "hidden_size": 2048, "num_attention_heads": 16,
          "rope_parameters": {"rope_type": "default", "rope_theta": 5000000, "mrope_section": [24, 20, 20],
                              "mrope_interleaved": true}})");
  ASSERT_TRUE(qwen3.mrope());
  EXPECT_TRUE(qwen3.mrope()->interleaved);
  const auto qwen35 = spec_from_hf_config_json(
      R"({"model_type": "qwen3_5_text", "num_hidden_layers": 4, "head_dim": 256, "hidden_size": 2048, "num_attention_heads": 8,
          "rope_parameters": {"rope_type": "default", "rope_theta": 10000000, "partial_rotary_factor": 0.25}})");
  ASSERT_TRUE(qwen35.mrope());  // Qwen3.5's code: [11, 11, 10] interleaved when the key is absent
  EXPECT_EQ(qwen35.mrope()->sections, (std::array<int64_t, 3>{11, 11, 10}));
  EXPECT_TRUE(qwen35.mrope()->interleaved);
  EXPECT_EQ(qwen35.rotary_dim(), 64);
  const auto glm = spec_from_hf_config_json(
      R"({"model_type": "glm4v_text", "head_dim": 128, "hidden_size": 4096, "num_attention_heads": 32,
          "rope_parameters": {"rope_type": "default", "rope_theta": 10000, "partial_rotary_factor": 0.5,
                              "mrope_section": [8, 12, 12]}})");
  EXPECT_EQ(glm.style(), ropekit::Style::interleaved);  // rotate_half_llm
  EXPECT_EQ(glm.rotary_dim(), 64);
  EXPECT_FALSE(glm.mrope()->interleaved);
  const auto glm_moe = spec_from_hf_config_json(
      R"({"model_type": "glm4v_moe_text", "head_dim": 128, "hidden_size": 4096, "num_attention_heads": 32,
          "rope_parameters": {"rope_type": "default", "rope_theta": 10000, "partial_rotary_factor": 0.5}})");
  EXPECT_EQ(glm_moe.style(), ropekit::Style::half);  // rotate_half
  EXPECT_EQ(glm_moe.mrope()->sections, (std::array<int64_t, 3>{8, 12, 12}));
  const auto other = spec_from_hf_config_json(config(
      R"("model_type": "llama", "rope_parameters": {"rope_theta": 10000, "mrope_section": [32, 16, 16], "mrope_interleaved": true})"));
  EXPECT_TRUE(other.mrope()->interleaved);
  EXPECT_FALSE(spec_from_hf_config_json(config(R"("model_type": "llama")")).mrope());
  auto error = [](const std::string& json) {
    try {
      (void)spec_from_hf_config_json(json);
    } catch (const ropekit::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(error(config(R"("rope_parameters": {"rope_theta": 10000, "mrope_section": [16, 24]})"))
                .find("rope_parameters.mrope_section: expected a list of 3 pair counts"),
            std::string::npos);
  EXPECT_NE(error(config(R"("rope_parameters": {"rope_theta": 10000, "mrope_section": [16, -24, 72]})"))
                .find("rope_parameters.mrope_section[1]: expected an integer >= 0"),
            std::string::npos);
  EXPECT_NE(error(config(R"("rope_parameters": {"rope_theta": 10000, "mrope_section": [16, 24, 20]})"))
                .find("mrope.sections: expected pair counts summing to rotary_dim / 2 (64)"),
            std::string::npos);
}

TEST(HfConfig, RopeScalingWinsOverRopeParametersAsInTransformers) {
  const auto both = hf_config_info_json(config(R"("rope_scaling": {"rope_type": "linear", "factor": 2.0},
      "rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 500000.0})"));
  EXPECT_DOUBLE_EQ(std::get<ropekit::scaling::Linear>(both.spec.scaling()).factor, 2.0);
  EXPECT_DOUBLE_EQ(both.spec.base(), 10000.0);  // rope_parameters' theta goes with it
  ASSERT_EQ(both.notes.size(), 1u);
  EXPECT_NE(both.notes[0].find("rope_scaling and rope_parameters disagree: read rope_scaling"), std::string::npos)
      << both.notes[0];
  EXPECT_NE(both.notes[0].find("yarn(factor=4"), std::string::npos) << both.notes[0];
  // Both saying the same (theta at the top for one, inside for the other): no note.
  const auto same = hf_config_info_json(config(R"("rope_theta": 500000.0,
      "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                       "original_max_position_embeddings": 8192},
      "rope_parameters": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                          "original_max_position_embeddings": 8192, "rope_theta": 500000.0})"));
  EXPECT_EQ(same.spec.scaling_name(), "llama3");
  EXPECT_TRUE(same.notes.empty()) << (same.notes.empty() ? "" : same.notes[0]);
  // An empty rope_scaling loses to rope_parameters (Python's `{} or rope_parameters`), silently.
  const auto empty = hf_config_info_json(config(R"("rope_scaling": {}, "rope_parameters": {"rope_type": "linear", "factor": 3.0})"));
  EXPECT_DOUBLE_EQ(std::get<ropekit::scaling::Linear>(empty.spec.scaling()).factor, 3.0);
  EXPECT_TRUE(empty.notes.empty());
  // rope_parameters that would not even parse is ignored, and said so.
  const auto broken = hf_config_info_json(config(R"("rope_scaling": {"rope_type": "linear", "factor": 2.0},
      "rope_parameters": {"rope_type": "warp"})"));
  EXPECT_EQ(broken.spec.scaling_name(), "linear");
  ASSERT_EQ(broken.notes.size(), 1u);
  EXPECT_NE(broken.notes[0].find("rope_parameters is not valid: rope_parameters.rope_type: expected one of"),
            std::string::npos)
      << broken.notes[0];
}

struct BadCase {
  const char* name;
  std::string json;
  std::string expected_in_message;
};

class HfConfigErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(HfConfigErrors, NamesTheJsonPath) {
  const auto& c = GetParam();
  try {
    spec_from_hf_config_json(c.json);
    FAIL() << c.name << ": no error for " << c.json;
  } catch (const ropekit::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(c.expected_in_message), std::string::npos) << "message: " << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << "one line: " << what;
  }
}

const std::string kLongropeOk = R"("short_factor": [1, 1, 1, 1], "long_factor": [1, 2, 3, 4])";
const char* kTiny = R"("hidden_size": 16, "num_attention_heads": 2, "max_position_embeddings": 4096)";
std::string tiny(const std::string& extra) { return std::string("{") + kTiny + ", " + extra + "}"; }

INSTANTIATE_TEST_SUITE_P(
    Cases, HfConfigErrors,
    ::testing::Values(
        BadCase{"malformed", R"({"hidden_size": 4096,)", "config: expected valid JSON"},
        BadCase{"number_overflows_double", config(R"("rope_theta": 1e400)"), "config: expected valid JSON with finite numbers"},
        BadCase{"not_object", "[1, 2]", "config: expected a JSON object"},
        BadCase{"theta_string", config(R"("rope_theta": "abc")"), R"(rope_theta: expected a number > 1, got "abc")"},
        BadCase{"theta_negative", config(R"("rope_theta": -5)"), "rope_theta: expected a number > 1, got -5"},
        BadCase{"yarn_factor_string", config(R"("rope_scaling": {"rope_type": "yarn", "factor": "abc"})"),
                R"(rope_scaling.factor: expected a number > 0, got "abc")"},
        BadCase{"linear_factor_below_one", config(R"("rope_scaling": {"type": "linear", "factor": 0.5})"),
                "rope_scaling.factor: expected a number >= 1, got 0.5"},
        BadCase{"unknown_rope_type", config(R"("rope_scaling": {"rope_type": "foo", "factor": 2})"),
                R"(rope_scaling.rope_type: expected one of default, linear, dynamic, yarn, longrope, llama3, proportional, got "foo")"},
        BadCase{"unknown_legacy_type", config(R"("rope_scaling": {"type": "bar"})"), "rope_scaling.type: expected one of"},
        BadCase{"type_not_string", config(R"("rope_scaling": {"rope_type": 3})"), "rope_scaling.rope_type: expected a string, got 3"},
        BadCase{"missing_type", config(R"("rope_scaling": {"factor": 2.0})"), "rope_scaling.rope_type: expected one of"},
        BadCase{"scaling_not_object", config(R"("rope_scaling": "su")"), R"(rope_scaling: expected an object, got "su")"},
        BadCase{"llama3_missing_low", config(R"("rope_scaling": {"rope_type": "llama3", "factor": 8, "high_freq_factor": 4,
                  "original_max_position_embeddings": 8192})"),
                "rope_scaling.low_freq_factor: expected a number > 0, got nothing"},
        BadCase{"llama3_high_not_above_low", config(R"("rope_scaling": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 4,
                  "high_freq_factor": 1, "original_max_position_embeddings": 8192})"),
                "rope_scaling.high_freq_factor: expected a number > low_freq_factor (4), got 1"},
        BadCase{"llama3_missing_original", config(R"("rope_scaling": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 1,
                  "high_freq_factor": 4})"),
                "rope_scaling.original_max_position_embeddings: expected an integer > 0, got nothing"},
        BadCase{"longrope_short_length", tiny(R"("rope_scaling": {"rope_type": "longrope", "short_factor": [1, 1, 1],
                  "long_factor": [1, 2, 3, 4]})"),
                "rope_scaling.short_factor: expected a list of 4 numbers > 0 (rotary_dim / 2), got 3 values"},
        BadCase{"longrope_long_element", tiny(R"("rope_scaling": {"rope_type": "longrope", "short_factor": [1, 1, 1, 1],
                  "long_factor": [1, 2, 3, "x"]})"),
                R"(rope_scaling.long_factor[3]: expected a number > 0, got "x")"},
        BadCase{"longrope_missing_long", tiny(R"("rope_scaling": {"rope_type": "longrope", "short_factor": [1, 1, 1, 1]})"),
                "rope_scaling.long_factor: expected a list of 4 numbers"},
        BadCase{"missing_dims", R"({"num_attention_heads": 32})", "hidden_size: expected an integer > 0 (or head_dim), got nothing"},
        BadCase{"hidden_not_multiple", R"({"hidden_size": 100, "num_attention_heads": 32})",
                "hidden_size: expected a multiple of num_attention_heads (32), got 100"},
        BadCase{"heads_zero", R"({"hidden_size": 4096, "num_attention_heads": 0})", "num_attention_heads: expected an integer > 0, got 0"},
        BadCase{"partial_above_one", config(R"("partial_rotary_factor": 1.5)"), "partial_rotary_factor: expected a number in (0, 1], got 1.5"},
        BadCase{"partial_odd", R"({"hidden_size": 40, "num_attention_heads": 4, "partial_rotary_factor": 0.5})",
                "partial_rotary_factor: expected a rotary dimension that is even and > 0, got rotary_dim 5"},
        BadCase{"rotary_dim_too_big", R"({"model_type": "gptj", "n_embd": 4096, "n_head": 16, "rotary_dim": 512})",
                "rotary_dim: expected an integer <= head_dim (256), got 512"},
        BadCase{"max_positions_fraction", config(R"("max_position_embeddings": 1.5)"),
                "max_position_embeddings: expected an integer > 0, got 1.5"},
        BadCase{"yarn_beta_string", config(R"("rope_scaling": {"rope_type": "yarn", "factor": 4, "beta_fast": "x"})"),
                R"(rope_scaling.beta_fast: expected a number > 0, got "x")"},
        BadCase{"yarn_truncate_string", config(R"("rope_scaling": {"rope_type": "yarn", "factor": 4, "truncate": "yes"})"),
                R"(rope_scaling.truncate: expected true or false, got "yes")"},
        BadCase{"rope_parameters_path", config(R"("rope_parameters": {"rope_type": "linear", "factor": [2]})"),
                "rope_parameters.factor: expected a number >= 1, got [2]"},
        BadCase{"dynamic_without_context", R"({"hidden_size": 4096, "num_attention_heads": 32,
                  "rope_scaling": {"rope_type": "dynamic", "factor": 2}})",
                "max_position_embeddings: expected an integer > 0 (or rope_scaling.original_max_position_embeddings), got nothing"},
        BadCase{"model_type_number", config(R"("model_type": 7)"), "model_type: expected a string, got 7"}),
    [](const ::testing::TestParamInfo<BadCase>& info) { return std::string(info.param.name); });

}  // namespace
