// The `ropekit` command, run in-process: exit codes, --json schemas, SVG panels, one-line errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli.hpp"

namespace {

struct Run {
  int code;
  std::string out, err;
};

Run run(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  const int code = ropekit::cli::run(args, out, err);
  return {code, out.str(), err.str()};
}

void expect_one_line_error(const Run& r, const std::string& needle) {
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(r.out.empty()) << r.out;
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
}

std::string data(const std::string& name) { return std::string(ROPEKIT_TEST_DATA) + "/configs/" + name + ".json"; }

TEST(Cli, HelpAndVersion) {
  EXPECT_EQ(run({"--help"}).code, 0);
  EXPECT_EQ(run({}).code, 2);
  for (const char* cmd : {"info", "presets", "verify", "bench"}) {
    const auto r = run({cmd, "--help"});
    EXPECT_EQ(r.code, 0) << cmd;
    EXPECT_NE(r.out.find("usage: ropekit"), std::string::npos) << cmd;
    EXPECT_NE(r.out.find("e.g."), std::string::npos) << cmd;
  }
  // Every spec flag is explained in `info --help`.
  const auto help = run({"info", "--help"}).out;
  for (const auto& flag : ropekit::cli::spec_value_flags())
    EXPECT_NE(help.find("--" + flag), std::string::npos) << "--" << flag << " undocumented";
  EXPECT_EQ(run({"--version"}).code, 0);
}

TEST(Cli, InfoTableForPreset) {
  const auto r = run({"info", "llama3.1-8b"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("scaling=llama3(factor=8"), std::string::npos);
  EXPECT_NE(r.out.find("attention factor: 1"), std::string::npos);
  EXPECT_NE(r.out.find("extrapolated"), std::string::npos);
  EXPECT_NE(r.out.find("interpolated"), std::string::npos);
  EXPECT_NE(r.out.find("blended"), std::string::npos);
}

TEST(Cli, InfoJsonHasTheDocumentedFields) {
  const auto r = run({"info", "llama3.1-8b", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  for (const char* key : {"source", "name", "spec", "max_position_embeddings", "original_context", "context", "seq_len",
                          "attention_factor", "num_attention_heads", "num_key_value_heads", "pairs"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["source"], "preset");
  EXPECT_EQ(j["spec"]["head_dim"], 128);
  EXPECT_EQ(j["spec"]["scaling"], "llama3");
  EXPECT_EQ(j["original_context"], 8192);
  EXPECT_EQ(j["context"], 131072);
  ASSERT_EQ(j["pairs"].size(), 64u);
  const auto& first = j["pairs"][0];
  for (const char* key : {"index", "inv_freq", "original_inv_freq", "wavelength", "original_wavelength", "ratio", "regime"})
    EXPECT_TRUE(first.contains(key)) << key;
  EXPECT_EQ(first["regime"], "extrapolated");
  EXPECT_EQ(j["pairs"][63]["regime"], "interpolated");
  EXPECT_NEAR(j["pairs"][63]["ratio"].get<double>(), 8.0, 1e-9);
}

TEST(Cli, InfoFromConfigAndFlagsAgree) {
  const auto from_config = nlohmann::json::parse(run({"info", data("llama3.1-8b"), "--json"}).out);
  const auto from_flags = nlohmann::json::parse(run({"info", "--head-dim", "128", "--base", "500000", "--scaling", "llama3",
                                                     "--factor", "8", "--original-max", "8192", "--json"})
                                                    .out);
  EXPECT_EQ(from_config["source"], "config");
  EXPECT_EQ(from_flags["source"], "flags");
  EXPECT_EQ(from_config["spec"]["description"], from_flags["spec"]["description"]);
  EXPECT_EQ(from_config["pairs"], from_flags["pairs"]);
}

TEST(Cli, InfoEveryScalingByFlags) {
  const std::vector<std::vector<std::string>> cases = {
      {"--scaling", "none"},
      {"--scaling", "linear", "--factor", "4"},
      {"--scaling", "ntk", "--alpha", "8"},
      {"--scaling", "dynamic", "--factor", "2", "--original-max", "4096"},
      {"--scaling", "yarn", "--factor", "4", "--original-max", "4096", "--beta-fast", "32", "--beta-slow", "1",
       "--mscale", "1", "--mscale-all-dim", "0.5"},
      {"--scaling", "llama3", "--factor", "8", "--original-max", "8192", "--low-freq-factor", "1", "--high-freq-factor", "4"},
      {"--scaling", "longrope", "--short-factor", "1,1,2,2", "--long-factor", "1,2,4,8", "--original-max", "4096",
       "--factor", "8"},
      {"--scaling", "truncated", "--a", "0.001", "--b", "0.01", "--rho", "0.0005"},
      {"--scaling", "truncated", "--truncate-length", "4096", "--xpos-scale-base", "512"}};
  for (auto args : cases) {
    const bool small = args[1] == "longrope";
    args.insert(args.begin(), {"info", "--head-dim", small ? "8" : "64", "--json"});
    const auto r = run(args);
    ASSERT_EQ(r.code, 0) << args[5] << ": " << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["pairs"].size(), small ? 4u : 32u);
  }
}

TEST(Cli, PlotWritesBothPanels) {
  const auto path = std::filesystem::temp_directory_path() / "ropekit_test_plot.svg";
  const auto r = run({"info", "phi3-mini-128k", "--plot", path.string()});
  ASSERT_EQ(r.code, 0) << r.err;
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  const std::string svg = text.str();
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_NE(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  EXPECT_NE(svg.find("id=\"panel-wavelength\""), std::string::npos);
  EXPECT_NE(svg.find("id=\"panel-decay\""), std::string::npos);
  EXPECT_NE(svg.find("original context 4096"), std::string::npos);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  // Balanced elements: every opened <g>, <svg> closes.
  auto count = [&](const std::string& s) {
    size_t n = 0;
    for (size_t at = svg.find(s); at != std::string::npos; at = svg.find(s, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("<g "), count("</g>"));
  EXPECT_EQ(count("<text "), count("</text>"));
  std::filesystem::remove(path);
}

TEST(Cli, PresetsListAndJson) {
  const auto r = run({"presets"});
  ASSERT_EQ(r.code, 0);
  for (const char* name : {"llama2-7b", "llama3-8b", "llama3.1-8b", "llama3.2-1b", "mistral-7b-v0.1",
                           "qwen2.5-7b-instruct-yarn", "deepseek-v2-lite", "phi3-mini-128k", "gpt-neox-20b", "gpt-j-6b",
                           "codellama-7b", "gemma-7b"})
    EXPECT_NE(r.out.find(name), std::string::npos) << name;
  const auto j = nlohmann::json::parse(run({"presets", "--json"}).out);
  ASSERT_GE(j.size(), 12u);
  for (const char* key : {"name", "model", "source", "description", "max_position_embeddings", "num_attention_heads",
                          "num_key_value_heads"})
    EXPECT_TRUE(j[0].contains(key)) << key;
}

TEST(Cli, VerifyPassesEveryPath) {
  for (const char* preset : {"gpt-neox-20b", "deepseek-v2-lite"}) {
    const auto r = run({"verify", preset, "--tokens", "4"});
    EXPECT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("36/36 paths passed"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("FAIL"), std::string::npos);
  }
}

TEST(Cli, BenchJsonFields) {
  const auto r = run({"bench", "llama3.2-1b", "--prefill", "16", "--decode-batch", "2", "--repeats", "1", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["q_heads"], 32);
  EXPECT_EQ(j["k_heads"], 8);
  ASSERT_EQ(j["shapes"].size(), 2u);
  for (const auto& s : j["shapes"]) {
    for (const char* key : {"shape", "batch", "seq", "bytes", "seconds", "gb_per_s", "memcpy_seconds", "memcpy_gb_per_s",
                            "ratio_to_memcpy"})
      EXPECT_TRUE(s.contains(key)) << key;
    EXPECT_GT(s["gb_per_s"].get<double>(), 0.0);
    EXPECT_GT(s["memcpy_gb_per_s"].get<double>(), 0.0);
  }
  EXPECT_EQ(j["shapes"][0]["bytes"], 2 * 16 * (32 + 8) * 64 * 2);  // read + write, bf16
}

TEST(Cli, BadInputsGiveOneLineErrors) {
  expect_one_line_error(run({"frobnicate"}), "unknown command \"frobnicate\"");
  expect_one_line_error(run({"info", "--bogus", "1"}), "unknown flag --bogus");
  expect_one_line_error(run({"info", "--head-dim"}), "--head-dim needs a value");
  expect_one_line_error(run({"info", "--head-dim", "abc"}), "--head-dim: expected an integer >= 1, got \"abc\"");
  expect_one_line_error(run({"info", "--head-dim", "64", "--base", "x1"}), "--base: expected a number, got \"x1\"");
  expect_one_line_error(run({"info", "--head-dim", "63"}), "head_dim: expected an even number in [2, 65536], got 63");
  expect_one_line_error(run({"info", "--head-dim", "64", "--scaling", "warp"}), "--scaling: expected none, linear");
  expect_one_line_error(run({"info", "--head-dim", "64", "--scaling", "yarn"}), "--factor is required with --scaling yarn");
  expect_one_line_error(run({"info", "--head-dim", "64", "--style", "diagonal"}), "--style: expected half or interleaved");
  expect_one_line_error(run({"info", "no-such-preset"}), "\"no-such-preset\" is neither a preset");
  expect_one_line_error(run({"info", "llama3-8b", "--base", "10"}), "--base cannot be combined with a preset");
  expect_one_line_error(run({"info"}), "expected a preset name, a config.json path or --head-dim");
  expect_one_line_error(run({"info", "llama3-8b", "--json=yes"}), "--json takes no value");
  expect_one_line_error(run({"presets", "extra"}), "takes no arguments");
  expect_one_line_error(run({"bench", "--device", "tpu"}), "--device: expected cpu");
  expect_one_line_error(run({"bench", "--dtype", "f64"}), "--dtype: expected f32, f16 or bf16");
  expect_one_line_error(run({"verify", "--tokens", "0"}), "--tokens: expected an integer >= 1");
  expect_one_line_error(run({"info", "llama3-8b", "--plot", "/nonexistent-dir/x.svg"}), "--plot: cannot write");
}

TEST(Cli, BadConfigFileGivesOneLineError) {
  const auto path = std::filesystem::temp_directory_path() / "ropekit_test_bad_config.json";
  {
    std::ofstream f(path);
    f << R"({"hidden_size": 4096, "num_attention_heads": 32, "rope_scaling": {"rope_type": "yarn", "factor": "abc"}})";
  }
  expect_one_line_error(run({"info", path.string()}), "rope_scaling.factor: expected a number > 0, got \"abc\"");
  {
    std::ofstream f(path);
    f << "{ not json";
  }
  expect_one_line_error(run({"info", path.string()}), "config: expected valid JSON");
  std::filesystem::remove(path);
}

}  // namespace
