// Argument parsing and the spec resolution every command shares.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "check.hpp"
#include "cli.hpp"
#include "presets.hpp"
#include "ropekit/error.hpp"
#include "ropekit/gguf.hpp"
#include "ropekit/hf_config.hpp"
#include "visit.hpp"

namespace ropekit::cli {

using detail::cat;

Args::Args(const std::vector<std::string>& tokens, const std::string& command, const std::set<std::string>& value_flags,
           const std::set<std::string>& bool_flags) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string& t = tokens[i];
    if (t.size() < 3 || t.rfind("--", 0) != 0) {
      positional_.push_back(t);
      continue;
    }
    std::string name = t.substr(2);
    std::optional<std::string> inline_value;
    if (const auto eq = name.find('='); eq != std::string::npos) {
      inline_value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (bool_flags.count(name)) {
      if (inline_value) throw UsageError("--" + name + " takes no value");
      bools_.insert(name);
    } else if (value_flags.count(name)) {
      if (inline_value) {
        values_[name] = *inline_value;
      } else if (i + 1 < tokens.size()) {
        values_[name] = tokens[++i];
      } else {
        throw UsageError("--" + name + " needs a value (see ropekit " + command + " --help)");
      }
    } else {
      throw UsageError("unknown flag --" + name + " for `ropekit " + command + "` (see ropekit " + command + " --help)");
    }
  }
}

std::optional<std::string> Args::text(const std::string& name) const {
  const auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

namespace {
bool parse_double(const std::string& s, double& x) {
  const char* begin = s.data();
  const char* end = begin + s.size();
  const auto r = std::from_chars(begin, end, x);
  return r.ec == std::errc() && r.ptr == end && std::isfinite(x);
}
}  // namespace

std::optional<double> Args::number(const std::string& name) const {
  auto t = text(name);
  if (!t) return std::nullopt;
  double x = 0;
  if (!parse_double(*t, x)) throw UsageError("--" + name + ": expected a number, got \"" + *t + "\"");
  return x;
}

const std::vector<IntegerFlag>& integer_flags() {
  // Bounds keep every size the commands compute from these in int64 and in memory.
  static const std::vector<IntegerFlag> flags = {
      {"head-dim", 2, 65536},  // the spec's own limit
      {"rotary-dim", 2, 65536},
      {"original-max", 1, kMaxContext},
      {"max-positions", 1, kMaxContext},
      {"seq-len", 1, kMaxContext},       // info
      {"layer", 0, int64_t{1} << 20},    // info
      {"tokens", 1, 4096},               // verify
      {"seed", 0, INT64_MAX},            // verify
      {"prefill", 1, int64_t{1} << 20},  // bench
      {"decode-batch", 1, 65536},
      {"repeats", 1, 1000},
      {"threads", 0, 1024},  // 0: every core
      {"q-heads", 1, 1024},
      {"k-heads", 1, 1024},
  };
  return flags;
}

std::optional<int64_t> Args::integer(const std::string& name) const {
  const auto& flags = integer_flags();
  const auto f = std::find_if(flags.begin(), flags.end(), [&](const IntegerFlag& x) { return x.name == name; });
  if (f == flags.end()) throw std::logic_error("--" + name + " is not in integer_flags()");
  auto t = text(name);
  if (!t) return std::nullopt;
  int64_t x = 0;
  const auto r = std::from_chars(t->data(), t->data() + t->size(), x);
  if (r.ec != std::errc() || r.ptr != t->data() + t->size() || x < f->least || x > f->most)
    throw UsageError("--" + name + ": expected an integer in [" + std::to_string(f->least) + ", " +
                     std::to_string(f->most) + "], got \"" + *t + "\"");
  return x;
}

std::optional<std::vector<double>> Args::number_list(const std::string& name) const {
  auto t = text(name);
  if (!t) return std::nullopt;
  std::vector<double> out;
  std::stringstream in(*t);
  std::string item;
  while (std::getline(in, item, ',')) {
    double x = 0;
    if (!parse_double(item, x))
      throw UsageError("--" + name + ": expected comma-separated numbers, got \"" + item + "\" in \"" + *t + "\"");
    out.push_back(x);
  }
  return out;
}

std::vector<std::string> Args::given() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : values_) out.push_back(k);
  for (const auto& k : bools_) out.push_back(k);
  return out;
}

const std::set<std::string>& spec_value_flags() {
  static const std::set<std::string> flags = {
      "head-dim", "rotary-dim", "base", "style", "scaling", "factor", "original-max", "beta-fast", "beta-slow",
      "mscale", "mscale-all-dim", "attention-factor", "low-freq-factor", "high-freq-factor", "alpha", "a", "b",
      "rho", "truncate-length", "fraction", "short-factor", "long-factor", "xpos-scale-base", "max-positions"};
  return flags;
}

namespace {

// A value flag that must be there for this scaling.
double need(const Args& a, const std::string& name, const std::string& why) {
  auto x = a.number(name);
  if (!x) throw UsageError("--" + name + " is required with " + why);
  return *x;
}

int64_t need_int(const Args& a, const std::string& name, const std::string& why) {
  auto x = a.integer(name);
  if (!x) throw UsageError("--" + name + " is required with " + why);
  return *x;
}

Resolved from_flags(const Args& a) {
  SpecParams p;
  const auto head = a.integer("head-dim");
  if (!head) throw UsageError("--head-dim is required when no preset or config.json is given (try ropekit info --help)");
  p.head_dim = *head;
  p.rotary_dim = a.integer("rotary-dim").value_or(0);
  p.base = a.number("base").value_or(10000.0);
  if (auto style = a.text("style")) {
    if (*style == "half") {
      p.style = Style::half;
    } else if (*style == "interleaved") {
      p.style = Style::interleaved;
    } else {
      throw UsageError("--style: expected half or interleaved, got \"" + *style + "\"");
    }
  }
  const std::string kind = a.text("scaling").value_or("none");
  const std::string why = "--scaling " + kind;
  if (kind == "none") {
    p.scaling = scaling::None{};
  } else if (kind == "linear") {
    p.scaling = scaling::Linear{need(a, "factor", why)};
  } else if (kind == "ntk_aware" || kind == "ntk") {  // ntk_aware: the name info --json prints
    p.scaling = scaling::NtkAware{need(a, "alpha", why)};
  } else if (kind == "dynamic") {
    p.scaling = scaling::DynamicNtk{need(a, "factor", why), need_int(a, "original-max", why)};
  } else if (kind == "yarn") {
    scaling::Yarn s;
    s.factor = need(a, "factor", why);
    s.original_max = need_int(a, "original-max", why);
    s.beta_fast = a.number("beta-fast").value_or(s.beta_fast);
    s.beta_slow = a.number("beta-slow").value_or(s.beta_slow);
    s.mscale = a.number("mscale");
    s.mscale_all_dim = a.number("mscale-all-dim");
    s.attention_factor = a.number("attention-factor");
    p.scaling = s;
  } else if (kind == "llama3") {
    scaling::Llama3 s;
    s.factor = need(a, "factor", why);
    s.original_max = need_int(a, "original-max", why);
    s.low_freq_factor = a.number("low-freq-factor").value_or(s.low_freq_factor);
    s.high_freq_factor = a.number("high-freq-factor").value_or(s.high_freq_factor);
    p.scaling = s;
  } else if (kind == "longrope") {
    scaling::LongRope s;
    auto sf = a.number_list("short-factor");
    auto lf = a.number_list("long-factor");
    if (!sf || !lf) throw UsageError("--short-factor and --long-factor are required with --scaling longrope");
    s.short_factor = *sf;
    s.long_factor = *lf;
    s.original_max = need_int(a, "original-max", why);
    s.factor = a.number("factor").value_or(1.0);
    s.attention_factor = a.number("attention-factor");
    p.scaling = s;
  } else if (kind == "truncated") {
    if (auto length = a.number("truncate-length")) {
      p.scaling = scaling::Truncated::from_length(*length);
    } else {
      p.scaling = scaling::Truncated{need(a, "a", why + " (or --truncate-length)"), need(a, "b", why), need(a, "rho", why)};
    }
  } else if (kind == "proportional") {
    p.scaling = scaling::Proportional{need(a, "fraction", why), a.number("factor").value_or(1.0)};
  } else {
    throw UsageError("--scaling: expected none, linear, ntk_aware (or ntk), dynamic, yarn, llama3, longrope, truncated or "
                     "proportional, got \"" + kind + "\"");
  }
  if (auto xpos = a.number("xpos-scale-base")) p.xpos = Xpos{*xpos, 0.4};
  Resolved r{RopeSpec(std::move(p)), "flags", "", a.integer("max-positions"), 0, 0, {}};
  return r;
}

}  // namespace

Resolved resolve(const Args& args, const std::string& default_preset) {
  bool spec_flags = false;
  for (const auto& name : args.given())
    if (spec_value_flags().count(name)) spec_flags = true;
  const auto& pos = args.positional();
  if (pos.size() > 1) throw UsageError("expected at most one preset name or config.json path, got \"" + pos[1] + "\" too");
  if (pos.empty() && spec_flags) return from_flags(args);
  const std::string target = pos.empty() ? default_preset : pos[0];
  if (target.empty()) throw UsageError("expected a preset name, a config.json path or --head-dim ... (see --help)");
  if (spec_flags) {
    for (const auto& name : args.given())
      if (spec_value_flags().count(name))
        throw UsageError("--" + name + " cannot be combined with a preset or config.json (\"" + target + "\")");
  }
  auto from_config = [](const HfConfigInfo& info, const std::string& source, const std::string& name) {
    return Resolved{info.spec, source, name, info.max_position_embeddings, info.num_attention_heads.value_or(0),
                    info.num_key_value_heads.value_or(0), info.notes, info.model};
  };
  if (const Preset* preset = find_preset(target)) {
    if (!preset->config_json.empty()) return from_config(hf_config_info_json(preset->config_json), "preset", preset->name);
    return {preset->spec(), "preset", preset->name, preset->max_position_embeddings, preset->num_attention_heads,
            preset->num_key_value_heads};
  }
  std::error_code ec;
  if (!std::filesystem::exists(target, ec))
    throw UsageError("\"" + target + "\" is neither a preset (see ropekit presets) nor a readable config.json or GGUF file");
  // A llama.cpp GGUF file: by its extension or its magic (the reader names a bad file itself).
  if (std::filesystem::path(target).extension() == ".gguf" || has_gguf_magic(target)) {
    GgufRopeInfo g = gguf_rope_info(target);
    std::vector<std::string> notes = g.notes;
    if (g.swa_spec)
      notes.insert(notes.begin(), "sliding-window layers" +
                                      (g.sliding_window ? " (window " + std::to_string(*g.sliding_window) + ")" : std::string()) +
                                      ": " + g.swa_spec->describe());
    return {g.spec, "gguf", target, g.context_length, g.head_count.value_or(0), g.head_count_kv.value_or(0), notes};
  }
  return from_config(hf_config_info(target), "config", target);  // names a directory or an unreadable file itself
}

namespace {
template <class T>
concept one_of_original_max = detail::one_of<T, scaling::DynamicNtk, scaling::Yarn, scaling::Llama3, scaling::LongRope>;

// The context a scaling was trained for (0: none) and its factor (1: none).
int64_t scaling_original_max(const Scaling& s) {
  using namespace scaling;
  return std::visit(detail::Overloaded{
                        [](const one_of_original_max auto& x) { return x.original_max; },
                        [](const detail::one_of<None, Linear, NtkAware, Truncated, Proportional> auto&) {
                          return int64_t{0};
                        },
                    },
                    s);
}
double scaling_factor(const Scaling& s) {
  using namespace scaling;
  return std::visit(detail::Overloaded{
                        [](const one_of_original_max auto& x) { return x.factor; },
                        [](const Proportional& x) { return x.factor; },
                        [](const detail::one_of<None, Linear, NtkAware, Truncated> auto&) { return 1.0; },
                    },
                    s);
}
int64_t bounded_context(int64_t n, const std::string& what) {
  if (n > kMaxContext) detail::fail(what, cat("at most ", kMaxContext, " tokens (2^31 - 1)"), n);
  return n;
}
}  // namespace

int64_t original_context(const Resolved& r) {
  if (int64_t o = scaling_original_max(r.spec.scaling()); o > 0) return bounded_context(o, "original context (original_max)");
  return bounded_context(r.max_position_embeddings.value_or(4096), "context (max_position_embeddings)");
}

int64_t scaled_context(const Resolved& r) {
  const int64_t o = scaling_original_max(r.spec.scaling());
  // A config that raised max_position_embeddings past the original context declares the scaled
  // context itself (Llama 3.1, Phi-3); one that kept it (Qwen2.5 + YaRN) scales by the factor.
  if (r.max_position_embeddings && (o == 0 || *r.max_position_embeddings > o))
    return bounded_context(*r.max_position_embeddings, "scaled context (max_position_embeddings)");
  if (o > 0) {
    // In double: original_max x factor may pass any integer (factor 1e300); at least one token.
    const double factor = scaling_factor(r.spec.scaling());
    const double n = std::max(1.0, std::round(static_cast<double>(o) * factor));
    if (!(n <= static_cast<double>(kMaxContext)))
      detail::fail("scaled context (original_max x factor)", cat("at most ", kMaxContext, " tokens (2^31 - 1)"),
                   cat(o, " x ", factor, " = ", n));
    return static_cast<int64_t>(n);
  }
  return bounded_context(r.max_position_embeddings.value_or(4096), "context (max_position_embeddings)");
}

}  // namespace ropekit::cli
