// The `ropekit` command, run in-process: exit codes, --json schemas, SVG panels, one-line errors.
#include <gtest/gtest.h>

#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
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

std::string read_all(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_all(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// A fresh, empty directory under the system temp directory, removed with its contents at scope exit.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& name) : path(std::filesystem::temp_directory_path() / name) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(path)) out.push_back(e.path().filename().string());
    return out;
  }
};

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

// M-RoPE presets name the position axis of each pair: Qwen2.5-VL's sections in order, Qwen3-VL's
// interleaved t h w t h w ..., in the table and the JSON.
TEST(Cli, InfoShowsTheMRopeAxisOfEachPair) {
  const auto chunked = run({"info", data("qwen2.5-vl-7b")});
  ASSERT_EQ(chunked.code, 0) << chunked.err;
  EXPECT_NE(chunked.out.find("mrope(sections=16,24,24)"), std::string::npos);
  EXPECT_NE(chunked.out.find("regime        axis\n"), std::string::npos);
  const auto json = nlohmann::json::parse(run({"info", data("qwen3-vl-8b"), "--json"}).out);
  ASSERT_EQ(json["pairs"].size(), 64u);
  for (size_t j = 0; j < 64; ++j)
    EXPECT_EQ(json["pairs"][j]["axis"], std::string(1, j < 60 ? "thw"[j % 3] : 't')) << j;
  const auto plain = nlohmann::json::parse(run({"info", data("llama3-8b"), "--json"}).out);
  EXPECT_TRUE(plain["pairs"][0]["axis"].is_null());
  EXPECT_EQ(run({"info", data("llama3-8b")}).out.find("axis"), std::string::npos);
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

// One flag set per scaling kind, each starting with --scaling KIND.
const std::vector<std::vector<std::string>>& scaling_flag_cases() {
  static const std::vector<std::vector<std::string>> cases = {
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
      {"--scaling", "truncated", "--truncate-length", "4096", "--xpos-scale-base", "512"},
      {"--scaling", "proportional", "--fraction", "0.25", "--factor", "2"}};
  return cases;
}

TEST(Cli, InfoEveryScalingByFlags) {
  for (auto args : scaling_flag_cases()) {
    const bool small = args[1] == "longrope";
    args.insert(args.begin(), {"info", "--head-dim", small ? "8" : "64", "--json"});
    const auto r = run(args);
    ASSERT_EQ(r.code, 0) << args[5] << ": " << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["pairs"].size(), small ? 4u : 32u);
  }
}

// The scaling and style names info --json prints are accepted as flags: fed back, they give the
// same spec.
TEST(Cli, InfoJsonNamesFeedBackAsFlags) {
  for (auto args : scaling_flag_cases()) {
    args.insert(args.begin(), {"info", "--head-dim", args[1] == "longrope" ? "8" : "64", "--json"});
    const auto first = run(args);
    ASSERT_EQ(first.code, 0) << args[5] << ": " << first.err;
    const auto spec = nlohmann::json::parse(first.out)["spec"];
    args[5] = spec["scaling"].get<std::string>();
    args.insert(args.end(), {"--style", spec["style"].get<std::string>()});
    const auto again = run(args);
    ASSERT_EQ(again.code, 0) << "--scaling " << args[5] << ": " << again.err;
    EXPECT_EQ(nlohmann::json::parse(again.out)["spec"], spec) << "--scaling " << args[5];
  }
}

// Per-layer models: one block per distinct RoPE, NoPE layers marked; --json's "layers"; --layer N.
TEST(Cli, InfoPerLayer) {
  const auto text = run({"info", "llama4-scout-17b-16e"});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("layers:           48, 1 distinct RoPE and NoPE layers"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("== layers 3, 7, 11, 15, 19, 23, 27, 31, 35, 39, 43, 47 (full_attention): no RoPE (NoPE)"),
            std::string::npos)
      << text.out;
  const auto j = nlohmann::json::parse(run({"info", data("gemma4-31b"), "--json"}).out);
  ASSERT_EQ(j["layers"].size(), 60u);
  EXPECT_EQ(j["spec"]["head_dim"], 256);  // top level: layer 0's (sliding) RoPE, as before
  const auto& full = j["layers"][5];
  EXPECT_EQ(full["layer_type"], "full_attention");
  EXPECT_EQ(full["rope"], true);
  EXPECT_EQ(full["spec"]["scaling"], "proportional");
  EXPECT_EQ(full["spec"]["rotary_dim"], 512);
  ASSERT_EQ(full["pairs"].size(), 256u);
  EXPECT_GT(full["pairs"][63]["inv_freq"].get<double>(), 0.0);
  EXPECT_EQ(full["pairs"][64]["inv_freq"], 0.0);  // proportional: pairs past 0.25 x 256 pass through
  EXPECT_EQ(full["pairs"][64]["regime"], "removed");
  EXPECT_EQ(j["layers"][0]["spec"]["head_dim"], 256);

  const auto nope = nlohmann::json::parse(run({"info", "cohere2-command-r7b", "--layer", "3", "--json"}).out);
  EXPECT_EQ(nope["rope"], false);
  EXPECT_EQ(nope["layer_type"], "full_attention");
  EXPECT_FALSE(nope.contains("spec"));
  const auto layer5 = nlohmann::json::parse(run({"info", "gemma3-27b", "--layer", "5", "--json"}).out);
  EXPECT_EQ(layer5["rope"], true);
  EXPECT_EQ(layer5["spec"]["base"], 1e6);
  EXPECT_EQ(layer5["spec"]["scaling"], "linear");
  EXPECT_EQ(layer5["pairs"].size(), 64u);
  expect_one_line_error(run({"info", "gemma3-27b", "--layer", "62"}), "--layer: expected a layer in [0, 62), got 62");
  expect_one_line_error(run({"info", "llama3-8b", "--layer", "0"}), "--layer: expected a config.json or a per-layer preset");

  TempDir dir("ropekit_test_plot_layers");
  const auto svg_path = dir.path / "gemma3.svg";
  ASSERT_EQ(run({"info", "gemma3-27b", "--plot", svg_path.string()}).code, 0);
  const std::string svg = read_all(svg_path);
  EXPECT_NE(svg.find("layers 5, 11, 17"), std::string::npos);  // a page per distinct RoPE
  EXPECT_NE(svg.find("layers 0-4, 6-10"), std::string::npos);
  EXPECT_NE(svg.find("height=\"1640\""), std::string::npos);
}

// The query scales and softmax-scale factors HF's attention applies beside RoPE, per layer.
TEST(Cli, InfoQueryScaleAndSoftmaxScale) {
  const auto text = run({"info", "llama4-scout-17b-16e"});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("(full_attention): no RoPE (NoPE)\nquery scale:      q times t(p) = 1 + 0.1 ln(1 + floor((p + 1) / 8192)); "
                          "t(0) = 1, t(8191) = 1.06931"),
            std::string::npos)
      << text.out;
  const auto j = nlohmann::json::parse(run({"info", "llama4-scout-17b-16e", "--json"}).out);
  EXPECT_TRUE(j["query_scale"].is_null());  // layer 0 rotates and has no temperature
  EXPECT_TRUE(j["layers"][0]["query_scale"].is_null());
  const auto& nope = j["layers"][3];
  EXPECT_EQ(nope["rope"], false);
  EXPECT_EQ(nope["query_scale"]["beta"], 0.1);
  EXPECT_EQ(nope["query_scale"]["length"], 8192);
  EXPECT_EQ(nope["query_scale"]["shift"], 1);
  EXPECT_EQ(nope["softmax_scale_factor"], 1.0);

  const auto ministral = nlohmann::json::parse(run({"info", "ministral3-8b", "--json"}).out);
  EXPECT_EQ(ministral["query_scale"]["description"], "1 + 0.1 ln(1 + floor(p / 16384))");
  EXPECT_EQ(ministral["query_scale"]["shift"], 0);
  for (const auto& layer : ministral["layers"]) EXPECT_EQ(layer["query_scale"], ministral["query_scale"]);

  const auto deepseek = nlohmann::json::parse(run({"info", "deepseek-v3", "--layer", "0", "--json"}).out);
  const double mscale = 0.1 * std::log(40.0) + 1.0;  // mscale_all_dim 1, factor 40
  EXPECT_NEAR(deepseek["softmax_scale_factor"].get<double>(), mscale * mscale, 1e-15);
  EXPECT_TRUE(deepseek["query_scale"].is_null());
  const auto plain = nlohmann::json::parse(run({"info", "llama3-8b", "--json"}).out);
  EXPECT_TRUE(plain["query_scale"].is_null());
  EXPECT_EQ(plain["softmax_scale_factor"], 1.0);
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
    EXPECT_NE(r.out.find(" cases passed on "), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("FAIL"), std::string::npos);
    EXPECT_NE(r.out.find(", 4 tokens per sequence"), std::string::npos) << r.out;
  }
  // --tokens reaches the cases: a longer run passes and says so.
  const auto longer = run({"verify", "llama3.1-8b", "--tokens", "64", "--seed", "7"});
  EXPECT_EQ(longer.code, 0) << longer.out << longer.err;
  EXPECT_NE(longer.out.find(", 64 tokens per sequence"), std::string::npos) << longer.out;
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
  expect_one_line_error(run({"info", "--head-dim", "abc"}), "--head-dim: expected an integer in [2, 65536], got \"abc\"");
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
  expect_one_line_error(run({"verify", "--tokens", "0"}), "--tokens: expected an integer in [1, 4096]");
  expect_one_line_error(run({"bench", "--head-dim", "65536", "--prefill", "1048576"}),
                        "--prefill: expected q and k of at most 4294967296 bytes");
  expect_one_line_error(run({"verify", "--head-dim", "65536", "--tokens", "4096"}), "--tokens: expected at most 16777216");
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

// Every integer flag of every command at 0, -1, 2^31, 2^32, 2^63 and non-numbers: a value in the
// flag's range runs, anything else is one line naming the flag and the range.
struct IntegerFlagCase {
  std::string flag;
  int64_t least, most;
  std::vector<std::string> command;  // a command that reads the flag and runs quickly
};

const std::vector<IntegerFlagCase>& integer_flag_cases() {
  const std::vector<std::string> bench = {"bench", "llama3.2-1b", "--prefill", "16", "--decode-batch", "2", "--repeats", "1"};
  static const std::vector<IntegerFlagCase> cases = {
      {"head-dim", 2, 65536, {"info"}},
      {"rotary-dim", 2, 65536, {"info", "--head-dim", "64"}},
      {"original-max", 1, 2147483647, {"info", "--head-dim", "64", "--scaling", "yarn", "--factor", "2"}},
      {"max-positions", 1, 2147483647, {"info", "--head-dim", "64"}},
      {"seq-len", 1, 2147483647, {"info", "llama3-8b"}},
      {"layer", 0, 1 << 20, {"info", "gemma3-27b"}},
      {"tokens", 1, 4096, {"verify", "gpt-neox-20b"}},
      {"seed", 0, INT64_MAX, {"verify", "gpt-neox-20b", "--tokens", "1"}},
      {"prefill", 1, 1 << 20, bench},
      {"decode-batch", 1, 65536, bench},
      {"repeats", 1, 1000, bench},
      {"threads", 0, 1024, bench},
      {"q-heads", 1, 1024, bench},
      {"k-heads", 1, 1024, bench},
  };
  return cases;
}

TEST(Cli, IntegerFlagsCheckTheirRange) {
  // The table above covers exactly the CLI's integer flags, with the same ranges.
  std::map<std::string, std::pair<int64_t, int64_t>> listed;
  for (const auto& f : ropekit::cli::integer_flags()) listed[f.name] = {f.least, f.most};
  ASSERT_EQ(listed.size(), integer_flag_cases().size());
  for (const auto& c : integer_flag_cases()) {
    ASSERT_TRUE(listed.count(c.flag)) << "--" << c.flag << " is not in integer_flags()";
    EXPECT_EQ(listed[c.flag], std::make_pair(c.least, c.most)) << "--" << c.flag;
  }
  const std::vector<std::string> probes = {"0", "-1", "2147483648", "4294967296", "9223372036854775808", "abc", "1.5", "", "0x10"};
  for (const auto& c : integer_flag_cases()) {
    for (const auto& probe : probes) {
      int64_t x = 0;
      const auto r = std::from_chars(probe.data(), probe.data() + probe.size(), x);
      const bool valid = r.ec == std::errc() && r.ptr == probe.data() + probe.size() && x >= c.least && x <= c.most;
      // The same command with the flag at the probe (replacing a value the command already gives it).
      std::vector<std::string> args;
      for (size_t i = 0; i < c.command.size(); ++i) {
        if (c.command[i] == "--" + c.flag) {
          ++i;
          continue;
        }
        args.push_back(c.command[i]);
      }
      args.insert(args.end(), {"--" + c.flag, probe});
      const auto result = run(args);
      const std::string what = "--" + c.flag + " " + probe;
      if (valid) {
        EXPECT_EQ(result.code, 0) << what << ": " << result.err;
        continue;
      }
      SCOPED_TRACE(what);
      expect_one_line_error(result, "--" + c.flag + ": expected an integer in [" + std::to_string(c.least) + ", " +
                                        std::to_string(c.most) + "], got \"" + probe + "\"");
      const ropekit::cli::Args parsed({"--" + c.flag, probe}, args[0], {c.flag}, {});
      EXPECT_THROW(parsed.integer(c.flag), ropekit::cli::UsageError) << what;
    }
  }
}

TEST(Cli, ExtremeFactorsKeepContextsInRange) {
  // original_max x factor = 8.2e303 tokens once printed as INT64_MIN; --plot then looped forever.
  const std::vector<std::string> spec = {"info", "--head-dim", "64", "--scaling", "llama3", "--factor", "1e300",
                                         "--original-max", "8192"};
  expect_one_line_error(run(spec), "scaled context (original_max x factor): expected at most 2147483647 tokens");
  TempDir dir("ropekit_test_huge_factor");
  auto with_plot = spec;
  with_plot.insert(with_plot.end(), {"--plot", (dir.path / "p.svg").string()});
  expect_one_line_error(run(with_plot), "scaled context");
  EXPECT_TRUE(dir.entries().empty()) << "no output file, empty or temporary, after a failure";
  // The largest context the flags allow still plots.
  const auto ok = run({"info", "--head-dim", "64", "--scaling", "yarn", "--factor", "1", "--original-max", "2147483647",
                       "--plot", (dir.path / "max.svg").string()});
  ASSERT_EQ(ok.code, 0) << ok.err;
  EXPECT_NE(read_all(dir.path / "max.svg").find("</svg>"), std::string::npos);
  // A tiny factor rounds to at least one token (0 once made the plot's log scale NaN).
  const auto tiny = run({"info", "--head-dim", "4", "--scaling", "llama3", "--factor", "1e-10", "--original-max", "8192",
                         "--json", "--plot", (dir.path / "tiny.svg").string()});
  ASSERT_EQ(tiny.code, 0) << tiny.err;
  EXPECT_EQ(nlohmann::json::parse(tiny.out)["context"], 1);
  EXPECT_NE(read_all(dir.path / "tiny.svg").find("</svg>"), std::string::npos);
  // A declared context past 2^31 - 1 is reported, not wrapped.
  write_all(dir.path / "big.json", R"({"hidden_size": 4096, "num_attention_heads": 32, "max_position_embeddings": 4294967296})");
  expect_one_line_error(run({"info", (dir.path / "big.json").string()}),
                        "context (max_position_embeddings): expected at most 2147483647 tokens (2^31 - 1), got 4294967296");
}

TEST(Cli, PlotReplacesTheFileOnlyWhenComplete) {
  TempDir dir("ropekit_test_plot_replace");
  const auto path = dir.path / "plot.svg";
  write_all(path, "old");
  // A failed run leaves the old file as it was (it once truncated it, then hung) and no temporary.
  const auto bad = run({"info", "--head-dim", "64", "--scaling", "llama3", "--factor", "1e300", "--original-max", "8192",
                        "--plot", path.string()});
  EXPECT_EQ(bad.code, 2);
  EXPECT_EQ(read_all(path), "old");
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"plot.svg"});
  // A good run replaces it whole.
  ASSERT_EQ(run({"info", "llama3-8b", "--plot", path.string()}).code, 0);
  const std::string svg = read_all(path);
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"plot.svg"});
  // A directory in the way: an error naming it, the directory untouched, nothing left behind.
  std::filesystem::create_directory(dir.path / "sub.svg");
  expect_one_line_error(run({"info", "llama3-8b", "--plot", (dir.path / "sub.svg").string()}),
                        "--plot: cannot replace \"" + (dir.path / "sub.svg").string() + "\"");
  EXPECT_TRUE(std::filesystem::is_directory(dir.path / "sub.svg"));
  EXPECT_EQ(dir.entries().size(), 2u);
}

TEST(Cli, PlotRejectsContextsItCannotDraw) {
  // A context below 1 has no logarithm: the wavelength grid once ran over ~2^32 decades.
  const auto rows = ropekit::cli::pair_rows(ropekit::RopeSpec({.head_dim = 8}), 16);
  EXPECT_THROW(ropekit::cli::plot_svg({{"t", "s", rows, 4096, 0}}), ropekit::cli::UsageError);
  EXPECT_THROW(ropekit::cli::plot_svg({{"t", "s", rows, -5, 4096}}), ropekit::cli::UsageError);
  // Wavelengths over ~300 decades (a linear factor of 1e290): a bounded number of grid lines.
  const auto wide = ropekit::cli::pair_rows(
      ropekit::RopeSpec({.head_dim = 8, .scaling = ropekit::scaling::Linear{1e290}}), 16);
  const std::string svg = ropekit::cli::plot_svg({{"t", "s", wide, 4096, 4096}});
  size_t grid = 0;
  for (size_t at = svg.find("stroke=\"#ddd\""); at != std::string::npos; at = svg.find("stroke=\"#ddd\"", at + 1)) ++grid;
  EXPECT_LE(grid, 17u + 11u) << "wavelength decades + decay ticks";
}

TEST(Cli, DirectoryAsConfigSaysSo) {
  TempDir dir("ropekit_test_config_dir");
  const auto r = run({"info", dir.path.string()});
  expect_one_line_error(r, "expected a config.json file, got the directory \"" + dir.path.string() + "\"");
  EXPECT_EQ(r.err.find("syntax"), std::string::npos) << r.err;
}

TEST(Cli, DeepOrHugeConfigIsOneLineError) {
  TempDir dir("ropekit_test_deep_config");
  const auto deep = dir.path / "deep.json";
  write_all(deep, R"({"hidden_size": 4096, "num_attention_heads": 32, "rope_scaling": {"rope_type": )" +
                      std::string(100000, '[') + std::string(100000, ']') + "}}");
  expect_one_line_error(run({"info", deep.string()}), "config: expected JSON nested at most 64 levels deep, got level 65");
  const auto huge = dir.path / "huge.json";
  write_all(huge, R"({"hidden_size": 4096, "num_attention_heads": 32})" + std::string(17 << 20, ' '));
  expect_one_line_error(run({"info", huge.string()}), "config path: expected a file of at most 16777216 bytes");
}

TEST(Cli, InfoSaysWhenRopeScalingAndRopeParametersDisagree) {
  TempDir dir("ropekit_test_both_blocks");
  const auto path = dir.path / "config.json";
  write_all(path, R"({"hidden_size": 4096, "num_attention_heads": 32, "max_position_embeddings": 8192,
    "rope_scaling": {"rope_type": "linear", "factor": 2.0},
    "rope_parameters": {"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0}})");
  const auto text = run({"info", path.string()});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("scaling=linear(factor=2)"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("note:             rope_scaling and rope_parameters disagree: read rope_scaling"),
            std::string::npos)
      << text.out;
  const auto j = nlohmann::json::parse(run({"info", path.string(), "--json"}).out);
  ASSERT_EQ(j["notes"].size(), 1u);
  EXPECT_NE(j["notes"][0].get<std::string>().find("linear(factor=4)"), std::string::npos) << j["notes"];
  // Agreeing blocks (HF 5 keeps rope_theta in rope_parameters): no note.
  write_all(path, R"({"hidden_size": 4096, "num_attention_heads": 32, "rope_theta": 10000.0,
    "rope_scaling": {"rope_type": "linear", "factor": 2.0},
    "rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}})");
  const auto agree = run({"info", path.string()});
  ASSERT_EQ(agree.code, 0) << agree.err;
  EXPECT_EQ(agree.out.find("note:"), std::string::npos) << agree.out;
}

TEST(Cli, VerifyXposCentersItsPositions) {
  // Without a center, k's scale zeta^(-p/512) grew to ~1e4 at p ~ 4000 and f32 paths failed (8.6e-5).
  for (const char* seed : {"1", "2", "3", "4", "5", "6", "7", "8"}) {
    const auto r = run({"verify", "--head-dim", "64", "--xpos-scale-base", "512", "--seed", seed});
    EXPECT_EQ(r.code, 0) << "seed " << seed << ": " << r.out << r.err;
    EXPECT_NE(r.out.find(" cases passed on "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("xPos center"), std::string::npos) << r.out;
  }
  const auto small = run({"verify", "--head-dim", "64", "--rotary-dim", "32", "--xpos-scale-base", "8", "--tokens", "20"});
  EXPECT_EQ(small.code, 0) << small.out << small.err;
  expect_one_line_error(run({"verify", "--head-dim", "64", "--xpos-scale-base", "1"}),
                        "--tokens: expected at most 3 tokens with xPos scale_base 1");
}

}  // namespace

namespace {

std::string gguf(const std::string& name) { return std::string(ROPEKIT_TEST_DATA) + "/gguf/" + name + ".gguf"; }

// inv_freq per pair of two `info --json` outputs, to a relative tolerance (GGUF stores factors as float32).
void expect_same_frequencies(const nlohmann::json& a, const nlohmann::json& b, double tolerance) {
  ASSERT_EQ(a["pairs"].size(), b["pairs"].size());
  for (size_t i = 0; i < a["pairs"].size(); ++i) {
    const double x = a["pairs"][i]["inv_freq"], y = b["pairs"][i]["inv_freq"];
    EXPECT_NEAR(x, y, tolerance * std::fabs(y)) << "pair " << i;
  }
}

}  // namespace

TEST(Cli, InfoReadsGgufFiles) {
  const auto text = run({"info", gguf("gemma3-27b")});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_NE(text.out.find("source:           gguf " + gguf("gemma3-27b")), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("scaling=linear(factor=8)"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("heads:            q 32, k 16"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("note:             sliding-window layers (window 1024): head_dim=128 rotary_dim=128 base=10000"),
            std::string::npos)
      << text.out;
  const auto j = nlohmann::json::parse(run({"info", gguf("gemma3-27b"), "--json"}).out);
  EXPECT_EQ(j["source"], "gguf");
  EXPECT_EQ(j["max_position_embeddings"], 131072);
  EXPECT_EQ(j["num_key_value_heads"], 16);
  EXPECT_EQ(j["spec"]["style"], "half");
  EXPECT_EQ(j["pairs"].size(), 64u);
  // By the magic alone, without the extension.
  TempDir dir("ropekit_test_gguf_magic");
  const auto copy = dir.path / "model.bin";
  write_all(copy, read_all(gguf("gemma3-27b")));
  const auto by_magic = nlohmann::json::parse(run({"info", copy.string(), "--json"}).out);
  EXPECT_EQ(by_magic["source"], "gguf");
  EXPECT_EQ(by_magic["pairs"], j["pairs"]);
}

TEST(Cli, GgufAndConfigGiveTheSameFrequencies) {
  // Converted the way llama.cpp's converter does (tests/data/gguf/make_gguf.py).
  for (const auto& [g, c] : std::vector<std::pair<std::string, std::string>>{
           {"qwen2.5-7b-yarn", "qwen2.5-7b-instruct-yarn"}, {"phi3-mini-128k", "phi3-mini-128k"}, {"llama3.1-8b", "llama3.1-8b"}}) {
    SCOPED_TRACE(g);
    for (const std::string seq : {"4096", "131072"}) {
      const auto from_gguf = nlohmann::json::parse(run({"info", gguf(g), "--json", "--seq-len", seq}).out);
      const auto from_config = nlohmann::json::parse(run({"info", data(c), "--json", "--seq-len", seq}).out);
      expect_same_frequencies(from_gguf, from_config, 2e-7);
      EXPECT_NEAR(from_gguf["attention_factor"].get<double>(), from_config["attention_factor"].get<double>(), 1e-7);
      EXPECT_EQ(from_gguf["num_attention_heads"], from_config["num_attention_heads"]);
      EXPECT_EQ(from_gguf["num_key_value_heads"], from_config["num_key_value_heads"]);
    }
  }
  // The pair style is llama.cpp's: interleaved for llama (its converter permuted q/k), half for qwen2 and phi3.
  EXPECT_EQ(nlohmann::json::parse(run({"info", gguf("llama3.1-8b"), "--json"}).out)["spec"]["style"], "interleaved");
  EXPECT_EQ(nlohmann::json::parse(run({"info", gguf("phi3-mini-128k"), "--json"}).out)["spec"]["style"], "half");
}

TEST(Cli, BadGgufIsOneLineError) {
  TempDir dir("ropekit_test_bad_gguf");
  const auto cut = dir.path / "cut.gguf";
  write_all(cut, read_all(gguf("llama3.1-8b")).substr(0, 100));
  expect_one_line_error(run({"info", cut.string()}), cut.string() + ": GGUF header key/value count: expected at most");
  const auto json = dir.path / "config.gguf";
  write_all(json, R"({"hidden_size": 4096, "num_attention_heads": 32})");
  expect_one_line_error(run({"info", json.string()}), "GGUF header: expected the magic \"GGUF\"");
}
