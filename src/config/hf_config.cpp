// HF config.json -> RopeSpec. Every value is read through a checker that knows its JSON path, so a
// bad config fails with "<path>: expected <what>, got <json value>".
#include "ropekit/hf_config.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <deque>
#include <map>
#include <set>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <vector>

#include "check.hpp"
#include "ropekit/error.hpp"

namespace ropekit {
namespace {

using json = nlohmann::json;
using detail::cat;

[[noreturn]] void bad(const std::string& path, const std::string& expected, const std::string& got) {
  throw Error(cat(path, ": expected ", expected, ", got ", got));
}

// A JSON value for a message: cut to about 80 bytes (at a UTF-8 boundary) so a huge value stays one
// short line.
std::string shown(const json& value) {
  std::string text = value.dump();
  if (text.size() <= 80) return text;
  size_t cut = 77;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return text.substr(0, cut) + "...";
}

[[noreturn]] void bad(const std::string& path, const std::string& expected, const json& got) {
  throw Error(cat(path, ": expected ", expected, ", got ", shown(got)));
}

// A JSON object plus the path that leads to it ("" for the root, "rope_scaling", ...).
class Node {
 public:
  Node(const json& value, std::string path) : value_(value), path_(std::move(path)) {}

  std::string path(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
  const std::string& path() const { return path_; }
  const json& value() const { return value_; }

  // The member, or nullptr when it is absent or JSON null (HF treats both as "not set").
  const json* find(const std::string& key) const {
    const auto it = value_.find(key);
    if (it == value_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  bool has(const std::string& key) const { return find(key) != nullptr; }

  std::optional<double> number(const std::string& key, const std::string& expected = "a number") const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_number()) bad(path(key), expected, *v);
    const double x = v->get<double>();
    if (!std::isfinite(x)) bad(path(key), expected, *v);
    return x;
  }

  // A number > least (strict) or >= least.
  std::optional<double> number_above(const std::string& key, double least, bool strict = true) const {
    const std::string expected = cat("a number ", strict ? "> " : ">= ", least);
    auto x = number(key, expected);
    if (x && (strict ? !(*x > least) : !(*x >= least))) bad(path(key), expected, *find(key));
    return x;
  }

  double required_above(const std::string& key, double least, bool strict = true) const {
    auto x = number_above(key, least, strict);
    if (!x) missing(key, cat("a number ", strict ? "> " : ">= ", least));
    return *x;
  }

  // A positive integer (an integral float such as 4096.0 is accepted, as Python's json gives ints).
  std::optional<int64_t> positive_int(const std::string& key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    const std::string expected = "an integer > 0";
    if (!v->is_number()) bad(path(key), expected, *v);
    const double x = v->get<double>();
    if (!(x >= 1.0) || x > 9.0e15 || std::floor(x) != x) bad(path(key), expected, *v);
    return static_cast<int64_t>(x);
  }

  std::optional<std::string> string(const std::string& key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) bad(path(key), "a string", *v);
    return v->get<std::string>();
  }

  std::optional<bool> boolean(const std::string& key) const {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) bad(path(key), "true or false", *v);
    return v->get<bool>();
  }

  std::vector<double> positive_list(const std::string& key, size_t count) const {
    const json* v = find(key);
    const std::string expected = cat("a list of ", count, " numbers > 0 (rotary_dim / 2)");
    if (!v) missing(key, expected);
    if (!v->is_array()) bad(path(key), expected, *v);
    if (v->size() != count) bad(path(key), expected, cat(v->size(), " values"));
    std::vector<double> out;
    for (size_t i = 0; i < v->size(); ++i) {
      const json& e = (*v)[i];
      if (!e.is_number() || !(e.get<double>() > 0.0) || !std::isfinite(e.get<double>()))
        bad(cat(path(key), "[", i, "]"), "a number > 0", e);
      out.push_back(e.get<double>());
    }
    return out;
  }

  [[noreturn]] void missing(const std::string& key, const std::string& expected) const {
    bad(path(key), expected, std::string("nothing (the key is missing)"));
  }

 private:
  const json& value_;
  std::string path_;
};

// nlohmann parses iteratively, but dump(), copies and comparisons of a value recurse: a document
// nested 100k deep overflows the stack. Count [ and { outside strings before parsing.
void check_nesting(std::string_view text) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character, a quote included
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth)
        throw Error(cat("config: expected JSON nested at most ", kMaxJsonDepth, " levels deep, got level ", depth,
                        " at byte ", i + 1));
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;  // a mismatched bracket is the parser's to report
    }
  }
}

json parse(std::string_view text) {
  if (text.size() > kMaxConfigBytes)
    throw Error(cat("config: expected at most ", kMaxConfigBytes, " bytes (16 MiB) of JSON, got ", text.size(), " bytes"));
  check_nesting(text);
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    throw Error(cat("config: expected valid JSON, got a syntax error at byte ", e.byte));
  } catch (const json::exception& e) {
    // e.g. out_of_range for a number such as 1e400 that no double can hold.
    throw Error(cat("config: expected valid JSON with finite numbers, got: ", e.what()));
  }
}

// Models whose attention rotates interleaved pairs (2i, 2i+1): GPT-J's and CodeGen's
// rotate_every_two, DeepSeek-V2/V3's complex multiplication on the rope slice, Llama 4's
// view_as_complex over (..., -1, 2), Cohere's rotate_half over x[..., ::2] / x[..., 1::2].
// GLM-4V's text model, rotate_half_llm over x[..., 0::2] / x[..., 1::2] (GLM-4V-MoE's is rotate_half).
bool interleaved_by_default(const std::string& model_type) {
  return model_type == "gptj" || model_type == "codegen" || model_type == "deepseek_v2" ||
         model_type == "deepseek_v3" || model_type == "llama4" || model_type == "llama4_text" ||
         model_type == "cohere" || model_type == "cohere2" || model_type == "glm4v" || model_type == "glm4v_text";
}

// M-RoPE: rope_parameters.mrope_section, three pair counts (t, h, w). As in transformers, the
// models' code fixes how the sections map to pairs (chunked: Qwen2-VL, Qwen2.5-VL, GLM-4V and
// GLM-4V-MoE; interleaved: Qwen3-VL, Qwen3.5 and their MoE versions) and gives the sections a
// block without the key; any other model says it with mrope_interleaved (vLLM's reading).
std::optional<MRope> read_mrope(const Node* block, const std::string& model_type) {
  struct Known {
    const char* model_type;
    bool interleaved;
    std::array<int64_t, 3> sections;
  };
  static constexpr Known known[] = {
      {"qwen2_vl", false, {16, 24, 24}}, {"qwen2_5_vl", false, {16, 24, 24}}, {"glm4v", false, {8, 12, 12}},
      {"glm4v_moe", false, {8, 12, 12}}, {"qwen3_vl", true, {24, 20, 20}},   {"qwen3_vl_moe", true, {24, 20, 20}},
      {"qwen3_5", true, {11, 11, 10}},   {"qwen3_5_moe", true, {11, 11, 10}}};
  const std::string text = "_text";
  const bool sub = model_type.size() > text.size() && model_type.ends_with(text);
  const std::string family = sub ? model_type.substr(0, model_type.size() - text.size()) : model_type;
  const Known* model = nullptr;
  for (const Known& k : known)
    if (family == k.model_type) model = &k;
  const json* v = block ? block->find("mrope_section") : nullptr;
  if (!v && !model) return std::nullopt;
  MRope m;
  if (v) {
    const std::string expected = "a list of 3 pair counts (time, height, width)";
    if (!v->is_array() || v->size() != 3) bad(block->path("mrope_section"), expected, *v);
    for (size_t i = 0; i < 3; ++i) {
      const json& e = (*v)[i];
      if (!e.is_number_integer() || e.get<int64_t>() < 0) bad(cat(block->path("mrope_section"), "[", i, "]"), "an integer >= 0", e);
      m.sections[i] = e.get<int64_t>();
    }
  } else {
    m.sections = model->sections;
  }
  const std::optional<bool> flag = block ? block->boolean("mrope_interleaved") : std::nullopt;
  m.interleaved = model ? model->interleaved : flag.value_or(false);
  return m;
}

struct Dims {
  int64_t head_dim;
  int64_t rotary_dim;
  std::string rotary_key;  // which key set rotary_dim (for error messages)
};

Dims read_dims(const Node& root, const Node* block, const std::string& model_type) {
  // GPT-J / CodeGen spell these n_embd / n_head.
  const std::string hidden_key = root.has("hidden_size") || !root.has("n_embd") ? "hidden_size" : "n_embd";
  const std::string heads_key =
      root.has("num_attention_heads") || !root.has("n_head") ? "num_attention_heads" : "n_head";
  int64_t head_dim = 0;
  std::string head_key;
  if (auto rope_head = root.positive_int("qk_rope_head_dim")) {
    // DeepSeek-V2/V3 (MLA): RoPE acts only on the qk_rope_head_dim slice of each head.
    head_dim = *rope_head;
    head_key = "qk_rope_head_dim";
  } else if (auto explicit_head = root.positive_int("head_dim")) {
    head_dim = *explicit_head;
    head_key = "head_dim";
  } else {
    auto hidden = root.positive_int(hidden_key);
    auto heads = root.positive_int(heads_key);
    if (!hidden) root.missing(hidden_key, "an integer > 0 (or head_dim)");
    if (!heads) root.missing(heads_key, "an integer > 0 (or head_dim)");
    if (*hidden % *heads != 0)
      bad(root.path(hidden_key), cat("a multiple of ", heads_key, " (", *heads, ")"), cat(*hidden));
    head_dim = *hidden / *heads;
    head_key = hidden_key;
  }
  if (head_dim % 2 != 0) bad(root.path(head_key), "an even head dimension", cat("head_dim ", head_dim));

  Dims dims{head_dim, head_dim, head_key};
  // Proportional RoPE spans the whole head; its partial_rotary_factor picks rotated pairs instead.
  if (block && block->string(block->has("rope_type") ? "rope_type" : "type") == "proportional") return dims;
  // partial_rotary_factor lives at the root (HF <= 4.x) or inside rope_parameters (HF 5).
  const Node* factor_node = block && block->has("partial_rotary_factor") ? block : &root;
  const std::string fraction_key = factor_node->has("partial_rotary_factor") ? "partial_rotary_factor"
                                   : root.has("rotary_pct")                 ? "rotary_pct"
                                                                            : "";
  if (!fraction_key.empty()) {
    const Node& node = fraction_key == "rotary_pct" ? root : *factor_node;
    const double fraction = *node.number_above(fraction_key, 0.0);
    if (fraction > 1.0) bad(node.path(fraction_key), "a number in (0, 1]", *node.find(fraction_key));
    // HF: dim = int(head_dim * partial_rotary_factor), truncating.
    dims.rotary_dim = static_cast<int64_t>(static_cast<double>(head_dim) * fraction);
    dims.rotary_key = node.path(fraction_key);
  } else if (auto rotary = root.positive_int("rotary_dim")) {
    if (*rotary > head_dim) bad(root.path("rotary_dim"), cat("an integer <= head_dim (", head_dim, ")"), cat(*rotary));
    dims.rotary_dim = *rotary;
    dims.rotary_key = "rotary_dim";
  }
  if (dims.rotary_dim <= 0 || dims.rotary_dim % 2 != 0)
    bad(dims.rotary_key, "a rotary dimension that is even and > 0", cat("rotary_dim ", dims.rotary_dim));
  (void)model_type;
  return dims;
}

Scaling read_scaling(const Node& block, const Node& root, int64_t rotary_dim,
                     std::optional<int64_t> max_position_embeddings) {
  std::string type_key = block.has("rope_type") ? "rope_type" : "type";
  auto type = block.string(type_key);
  if (!type) {
    // HF 5 writes rope_parameters even for plain RoPE ({"rope_theta": ..., "rope_type": "default"});
    // a block that holds nothing but those keys is plain RoPE.
    bool only_plain = true;
    for (const auto& item : block.value().items()) {
      const std::string& key = item.key();
      if (key != "rope_theta" && key != "partial_rotary_factor" && key != "mrope_section" && key != "mrope_interleaved")
        only_plain = false;
    }
    if (only_plain) return scaling::None{};
    block.missing("rope_type", "one of default, linear, dynamic, yarn, longrope, llama3, proportional");
  }
  const std::string& t = *type;
  const auto original_from_block = block.positive_int("original_max_position_embeddings");

  // "mrope" (Qwen2-VL, Qwen2.5-VL): default frequencies; HF renames it so (its sections split positions, not frequencies).
  if (t == "default" || t == "mrope") return scaling::None{};
  if (t == "linear") return scaling::Linear{block.required_above("factor", 1.0, false)};
  if (t == "dynamic") {
    scaling::DynamicNtk s;
    s.factor = block.required_above("factor", 1.0, false);
    if (original_from_block) {
      s.original_max = *original_from_block;
    } else if (max_position_embeddings) {
      s.original_max = *max_position_embeddings;  // HF: dynamic NTK grows past max_position_embeddings
    } else {
      root.missing("max_position_embeddings", "an integer > 0 (or rope_scaling.original_max_position_embeddings)");
    }
    return s;
  }
  if (t == "yarn") {
    scaling::Yarn s;
    const auto explicit_factor = block.number_above("factor", 0.0);
    // original_max_position_embeddings: the pre-YaRN context; HF falls back to max_position_embeddings.
    if (original_from_block) {
      s.original_max = *original_from_block;
    } else if (max_position_embeddings) {
      s.original_max = *max_position_embeddings;
    } else {
      block.missing("original_max_position_embeddings", "an integer > 0 (or a top-level max_position_embeddings)");
    }
    // Decision (HF transformers >= 4.5x, _compute_yarn_parameters): an explicit `factor` wins; only
    // when `factor` is missing is it max_position_embeddings / original_max_position_embeddings.
    // (Older HF releases overwrote factor with that ratio whenever original_max_position_embeddings
    // was present, which turned Qwen2.5's documented {factor 4, original 32768} with
    // max_position_embeddings 32768 into factor 1; HF later fixed this and only warns on a mismatch.)
    if (explicit_factor) {
      s.factor = *explicit_factor;
    } else if (original_from_block && max_position_embeddings) {
      s.factor = static_cast<double>(*max_position_embeddings) / static_cast<double>(*original_from_block);
    } else {
      block.missing("factor", "a number > 0");
    }
    if (auto v = block.number_above("beta_fast", 0.0)) s.beta_fast = *v;
    if (auto v = block.number_above("beta_slow", 0.0)) s.beta_slow = *v;
    s.mscale = block.number("mscale");
    s.mscale_all_dim = block.number("mscale_all_dim");
    s.attention_factor = block.number_above("attention_factor", 0.0);
    if (auto v = block.boolean("truncate")) s.truncate = *v;
    return s;
  }
  if (t == "longrope" || t == "su") {  // "su" is Phi-3's early name for LongRoPE
    scaling::LongRope s;
    const auto pairs = static_cast<size_t>(rotary_dim / 2);
    s.short_factor = block.positive_list("short_factor", pairs);
    s.long_factor = block.positive_list("long_factor", pairs);
    // Phi-3 keeps original_max_position_embeddings at the top level; HF 5 moves it into the block.
    auto original = original_from_block ? original_from_block : root.positive_int("original_max_position_embeddings");
    if (original) {
      s.original_max = *original;
    } else if (max_position_embeddings) {
      s.original_max = *max_position_embeddings;
    } else {
      root.missing("original_max_position_embeddings", "an integer > 0 (or max_position_embeddings)");
    }
    // factor feeds only the attention factor: explicit if given, else the context-extension ratio.
    if (auto factor = block.number_above("factor", 0.0)) {
      s.factor = *factor;
    } else if (original && max_position_embeddings) {
      s.factor = static_cast<double>(*max_position_embeddings) / static_cast<double>(*original);
    } else {
      s.factor = 1.0;
    }
    s.attention_factor = block.number_above("attention_factor", 0.0);
    return s;
  }
  if (t == "proportional") {
    // HF _compute_proportional_rope_parameters: partial_rotary_factor (entry, else root, else 1) picks
    // the rotated pairs; the rotation spans the whole head (read_info keeps rotary_dim = head_dim).
    const Node& holder = block.has("partial_rotary_factor") ? block : root;
    scaling::Proportional s;
    if (holder.has("partial_rotary_factor")) {
      s.fraction = *holder.number_above("partial_rotary_factor", 0.0);
      if (s.fraction > 1.0) bad(holder.path("partial_rotary_factor"), "a number in (0, 1]", *holder.find("partial_rotary_factor"));
    }
    if (auto factor = block.number_above("factor", 0.0)) s.factor = *factor;
    return s;
  }
  if (t == "llama3") {
    scaling::Llama3 s;
    s.factor = block.required_above("factor", 0.0);
    s.low_freq_factor = block.required_above("low_freq_factor", 0.0);
    s.high_freq_factor = block.required_above("high_freq_factor", 0.0);
    if (!(s.high_freq_factor > s.low_freq_factor))
      bad(block.path("high_freq_factor"), cat("a number > low_freq_factor (", s.low_freq_factor, ")"),
          *block.find("high_freq_factor"));
    if (!original_from_block)
      block.missing("original_max_position_embeddings", "an integer > 0");
    s.original_max = *original_from_block;
    return s;
  }
  bad(block.path(type_key), "one of default, linear, dynamic, yarn, longrope, llama3, proportional", json(t));
}

HfConfigInfo read_info(const Node& root, const Node* block) {
  const std::string model_type = root.string("model_type").value_or("");

  std::optional<int64_t> max_position_embeddings = root.has("max_position_embeddings") || !root.has("n_positions")
                                     ? root.positive_int("max_position_embeddings")
                                     : root.positive_int("n_positions");
  std::optional<int64_t> num_attention_heads = root.has("num_attention_heads") || !root.has("n_head")
                                 ? root.positive_int("num_attention_heads")
                                 : root.positive_int("n_head");
  std::optional<int64_t> num_key_value_heads = root.positive_int("num_key_value_heads");
  if (!num_key_value_heads) num_key_value_heads = num_attention_heads;

  const Dims dims = read_dims(root, block, model_type);

  SpecParams params;
  params.head_dim = dims.head_dim;
  params.rotary_dim = dims.rotary_dim;
  // rope_theta: top level (HF 4.x), inside rope_parameters (HF 5), or GPT-NeoX's rotary_emb_base.
  std::optional<double> theta;
  if (block && block->has("rope_theta")) {
    theta = block->number_above("rope_theta", 1.0);
  } else if (root.has("rope_theta")) {
    theta = root.number_above("rope_theta", 1.0);
  } else {
    theta = root.number_above("rotary_emb_base", 1.0);
  }
  params.base = theta.value_or(10000.0);  // HF's default for every model without the key
  params.style = interleaved_by_default(model_type) ? Style::interleaved : Style::half;
  if (auto interleave = root.boolean("rope_interleave")) params.style = *interleave ? Style::interleaved : Style::half;
  if (block) params.scaling = read_scaling(*block, root, dims.rotary_dim, max_position_embeddings);
  if (std::holds_alternative<scaling::Proportional>(params.scaling)) params.rotary_dim = dims.head_dim;
  params.mrope = read_mrope(block, model_type);

  try {
    return HfConfigInfo{RopeSpec(std::move(params)), max_position_embeddings, model_type, num_attention_heads,
                        num_key_value_heads, {}};
  } catch (const Error& e) {
    // Checks above cover what a config can say; anything left is reported with the spec's name.
    throw Error(cat("config: ", std::string(e.what()).substr(std::string("ropekit: ").size())));
  }
}


bool one_of(const std::string& model_type, std::initializer_list<const char*> names) {
  return std::any_of(names.begin(), names.end(), [&](const char* n) { return model_type == n; });
}

// The label HF gives layer i when the config has no `layer_types`: one `last` every `period` layers.
std::vector<std::string> periodic_labels(int64_t layers, int64_t period, const char* every, const char* last) {
  std::vector<std::string> out;
  for (int64_t i = 0; i < layers; ++i) out.emplace_back((i + 1) % period ? every : last);
  return out;
}

int64_t period_at(const Node& root, const std::string& key, int64_t fallback) {
  return root.positive_int(key).value_or(fallback);
}

// Llama 4 / SmolLM3 `no_rope_layers`: entry i is 1 when layer i uses RoPE. HF derives a NoPE layer
// every `no_rope_layer_interval` (default 4) when the list is absent (Llama 4: or empty).
std::optional<std::vector<bool>> read_uses_rope(const Node& root, const std::string& model_type, int64_t layers) {
  const bool family = one_of(model_type, {"llama4", "llama4_text", "smollm3"});
  const json* v = root.find("no_rope_layers");
  const bool empty_means_default = one_of(model_type, {"llama4", "llama4_text"});
  if (!v || (empty_means_default && v->is_array() && v->empty())) {
    if (!family) return std::nullopt;
    const int64_t interval = period_at(root, "no_rope_layer_interval", 4);
    std::vector<bool> out;
    for (int64_t i = 0; i < layers; ++i) out.push_back((i + 1) % interval != 0);
    return out;
  }
  const std::string expected = cat("a list of ", layers, " entries 0 or 1 (num_hidden_layers; 1 = the layer uses RoPE)");
  if (!v->is_array()) bad(root.path("no_rope_layers"), expected, *v);
  if (v->size() != static_cast<size_t>(layers)) bad(root.path("no_rope_layers"), expected, cat(v->size(), " entries"));
  std::vector<bool> out;
  for (size_t i = 0; i < v->size(); ++i) {
    const json& e = (*v)[i];
    if (!e.is_number_integer() || (e.get<int64_t>() != 0 && e.get<int64_t>() != 1))
      bad(cat(root.path("no_rope_layers"), "[", i, "]"), "0 or 1", e);
    out.push_back(e.get<int64_t>() == 1);
  }
  return out;
}

// Each layer's label: `layer_types`, else the pattern HF's config class derives for the family
// (transformers 5.23), else none.
std::vector<std::string> read_layer_types(const Node& root, const std::string& model_type, int64_t layers,
                                          const std::optional<std::vector<bool>>& uses_rope) {
  if (const json* v = root.find("layer_types")) {
    const std::string expected = cat("a list of ", layers, " strings (num_hidden_layers)");
    if (!v->is_array()) bad(root.path("layer_types"), expected, *v);
    if (v->size() != static_cast<size_t>(layers)) bad(root.path("layer_types"), expected, cat(v->size(), " entries"));
    std::vector<std::string> out;
    for (size_t i = 0; i < v->size(); ++i) {
      if (!(*v)[i].is_string()) bad(cat(root.path("layer_types"), "[", i, "]"), "a string", (*v)[i]);
      out.push_back((*v)[i].get<std::string>());
    }
    return out;
  }
  if (one_of(model_type, {"gemma2"})) return periodic_labels(layers, 2, "sliding_attention", "full_attention");
  if (one_of(model_type, {"gemma3", "gemma3_text", "gemma4", "gemma4_text"}))
    return periodic_labels(layers, period_at(root, "sliding_window_pattern", 6), "sliding_attention", "full_attention");
  if (one_of(model_type, {"cohere2"}))
    return periodic_labels(layers, period_at(root, "sliding_window_pattern", 4), "sliding_attention", "full_attention");
  if (one_of(model_type, {"gpt_oss"})) return periodic_labels(layers, 2, "sliding_attention", "full_attention");
  if (one_of(model_type, {"qwen3_next", "qwen3_5", "qwen3_5_text", "qwen3_5_moe", "qwen3_5_moe_text"}))
    return periodic_labels(layers, period_at(root, "full_attention_interval", 4), "linear_attention", "full_attention");
  if (uses_rope && one_of(model_type, {"llama4", "llama4_text"})) {
    std::vector<std::string> out;
    for (bool rope : *uses_rope) out.emplace_back(rope ? "chunked_attention" : "full_attention");
    return out;
  }
  if (uses_rope && one_of(model_type, {"smollm3"})) {
    const bool sliding = root.boolean("use_sliding_window").value_or(false) && root.has("sliding_window");
    std::vector<std::string> out;
    for (bool rope : *uses_rope) out.emplace_back(sliding && !rope ? "sliding_attention" : "full_attention");
    return out;
  }
  return std::vector<std::string>(static_cast<size_t>(layers));
}

// What HF's attention does to q and to the softmax scale beside RoPE (transformers 5.23), onto
// the layers read (NoPE already marked):
//   llama4: attn_temperature_tuning (default true) scales q on NoPE layers by
//     1 + attn_scale log1p(floor((p + 1) / floor_scale))   (defaults 0.1, 8192);
//   ministral3, mistral4: q times 1 + llama_4_scaling_beta log(1 + floor(p / original_max_position_embeddings))
//     (both from rope_parameters) on every layer;
//   the MLA families' yarn_apply_mscale: with a rope_type other than default and a nonzero
//     mscale_all_dim, the softmax scale times (0.1 mscale_all_dim ln(factor) + 1)^2 (factor > 1).
void read_attention_corrections(const Node& root, const std::string& model_type, const Node* rope_block,
                                std::vector<LayerRope>& layers, std::vector<std::string>& notes) {
  if (one_of(model_type, {"llama4", "llama4_text"}) && root.boolean("attn_temperature_tuning").value_or(true)) {
    QueryScale q;
    q.beta = root.number_above("attn_scale", 0.0, false).value_or(0.1);
    q.length = root.positive_int("floor_scale").value_or(8192);
    q.shift = 1;
    q.validate(root.path("attn_scale"));
    for (LayerRope& l : layers)
      if (!l.spec) l.query_scale = q;
    notes.push_back(cat("NoPE layers: q times ", q.describe(), " (attn_temperature_tuning, attn_scale, floor_scale; ",
                        "HF's Llama4TextAttention)"));
  }
  if (!rope_block) return;
  if (one_of(model_type, {"ministral3", "mistral4"})) {
    if (const auto beta = rope_block->number_above("llama_4_scaling_beta", 0.0, false)) {
      const auto length = rope_block->positive_int("original_max_position_embeddings");
      if (!length) rope_block->missing("original_max_position_embeddings", "an integer > 0 (llama_4_scaling_beta divides positions by it)");
      const QueryScale q{1.0, *beta, *length, 0};
      q.validate(rope_block->path("llama_4_scaling_beta"));
      for (LayerRope& l : layers) l.query_scale = q;
      notes.push_back(cat("every layer: q (all its channels) times ", q.describe(),
                          " (llama_4_scaling_beta, original_max_position_embeddings; HF's get_llama_4_attn_scale)",
                          root.has("kv_lora_rank") ? "; MLA: the spec is the rope slice, scale q_nope too (apply_query_scale)"
                                                   : ""));
    }
  }
  if (one_of(model_type, {"deepseek_v2", "deepseek_v3", "deepseek_v32", "glm4_moe_lite", "glm_moe_dsa", "longcat_flash",
                          "minicpm3", "mistral4", "mistral_large4", "youtu", "axk1", "axk2", "bailing_hybrid", "hy_v4"})) {
    const std::string type = rope_block->string("rope_type").value_or(rope_block->string("type").value_or("default"));
    const double all_dim = rope_block->number("mscale_all_dim").value_or(0.0);
    if (type != "default" && all_dim != 0.0) {
      const double factor = rope_block->required_above("factor", 0.0);
      const double mscale = factor <= 1.0 ? 1.0 : 0.1 * all_dim * std::log(factor) + 1.0;
      for (LayerRope& l : layers) l.softmax_scale_factor = mscale * mscale;
      notes.push_back(cat("softmax scale times ", mscale * mscale, " = (0.1 x mscale_all_dim ", all_dim, " x ln(factor ", factor,
                          ") + 1)^2 (HF's yarn_apply_mscale)"));
    }
  }
}

// Layers of these types have no RoPE in HF's modeling code whatever the config's rope block says.
bool type_without_rope(const std::string& model_type, const std::string& layer_type) {
  // Cohere2Attention rotates only when it has a sliding window.
  if (one_of(model_type, {"cohere2"})) return layer_type != "sliding_attention";
  // Qwen3-Next / Qwen3.5 linear-attention layers (Gated DeltaNet) have no positional rotation.
  if (one_of(model_type, {"qwen3_next", "qwen3_5", "qwen3_5_text", "qwen3_5_moe", "qwen3_5_moe_text"}))
    return layer_type == "linear_attention";
  return false;
}

// The config object a model's RoPE lives in: `text_config` for multimodal models (Gemma 3/4,
// Llama 4, Qwen3-VL), else the root.
const json& text_root(const json& doc, std::string& path) {
  const auto it = doc.find("text_config");
  if (it == doc.end() || it->is_null()) return doc;
  if (!it->is_object()) bad("text_config", "an object", *it);
  path = "text_config";
  return *it;
}

// `rope_parameters` keyed by layer type (HF nested_rope_parameter_keys: some key is a layer label).
bool keyed_by_layer_type(const std::optional<Node>& params, const std::set<std::string>& labels) {
  if (!params) return false;
  for (const auto& item : params->value().items())
    if (labels.count(item.key())) return true;
  return false;
}

}  // namespace

HfConfigInfo hf_config_info_json(std::string_view text) {
  const json doc = parse(text);
  if (!doc.is_object()) bad("config", "a JSON object", doc.dump().substr(0, 40));
  std::string root_path;
  const json& root_value = text_root(doc, root_path);
  const Node root(root_value, root_path);
  const Node outer(doc, "");
  std::string model_type = root.string("model_type").value_or(outer.string("model_type").value_or(""));

  auto block_at = [&](const char* key) {
    std::optional<Node> block;
    if (const json* v = root.find(key)) {
      if (!v->is_object()) bad(root.path(key), "an object", *v);
      block.emplace(*v, root.path(key));
    }
    return block;
  };
  const std::optional<Node> scaling_block = block_at("rope_scaling"), parameters_block = block_at("rope_parameters");

  const auto declared_layers = root.positive_int("num_hidden_layers");
  if (declared_layers && *declared_layers > kMaxLayers)
    bad(root.path("num_hidden_layers"), cat("an integer in [1, ", kMaxLayers, "]"), *root.find("num_hidden_layers"));
  const json* types_value = root.find("layer_types");
  const int64_t layers = declared_layers ? *declared_layers
                         : types_value && types_value->is_array() && !types_value->empty()
                             ? static_cast<int64_t>(types_value->size())
                             : 1;
  if (layers > kMaxLayers)
    bad(root.path("layer_types"), cat("at most ", kMaxLayers, " entries"), cat(layers, " entries"));
  const auto uses_rope = read_uses_rope(root, model_type, layers);
  std::vector<std::string> labels = read_layer_types(root, model_type, layers, uses_rope);
  if (one_of(model_type, {"gemma4", "gemma4_text"}) && !labels.empty()) labels.back() = "full_attention";  // HF forces it

  // Per layer type: the block its spec is read from, built where HF's config class fills defaults.
  std::vector<std::string> distinct;
  std::set<std::string> seen;
  for (const auto& l : labels)
    if (seen.insert(l).second) distinct.push_back(l);
  std::deque<json> synthetic;  // blocks HF builds from legacy keys or class defaults (stable addresses)
  struct TypeBlock {
    std::optional<Node> block;  // nullopt + no_rope: the type has no RoPE
    bool no_rope = false;
  };
  std::vector<std::pair<std::string, TypeBlock>> per_type;
  const bool gemma3 = one_of(model_type, {"gemma3", "gemma3_text"});
  const bool gemma4 = one_of(model_type, {"gemma4", "gemma4_text"});
  const bool nested = keyed_by_layer_type(parameters_block, seen);
  std::optional<HfConfigInfo> info;  // the counts and notes, from the first layer type read
  if (nested || gemma3 || gemma4) {
    for (const auto& type : distinct) {
      TypeBlock t;
      const json* entry = nested ? parameters_block->find(type) : nullptr;
      // A null entry: no RoPE for that type (HF's standardize_rope_params skips it); Gemma3Config
      // instead fills the default entry.
      const bool present = nested && parameters_block->value().contains(type);
      if (present && !entry && !gemma3) {
        t.no_rope = true;
      } else if (entry) {
        if (!entry->is_object()) bad(parameters_block->path(type), "an object (or null: no RoPE)", *entry);
        if (gemma3 && type == "full_attention" && scaling_block && !scaling_block->value().empty()) {
          json merged = *entry;  // Gemma3Config: rope_scaling updates the full-attention entry
          merged.update(scaling_block->value());
          synthetic.push_back(std::move(merged));
          t.block.emplace(synthetic.back(), parameters_block->path(type));
        } else {
          t.block.emplace(*entry, parameters_block->path(type));
        }
      } else if (gemma3 && (type == "full_attention" || type == "sliding_attention")) {
        // Legacy Gemma 3: rope_theta (default 1e6) and rope_scaling for full layers, rope_local_base_freq
        // (default 1e4) for sliding ones.
        const bool full = type == "full_attention";
        json block = full && scaling_block && !scaling_block->value().empty() ? scaling_block->value()
                                                                               : json{{"rope_type", "default"}};
        if (!block.contains("rope_theta"))
          block["rope_theta"] = full ? root.number_above("rope_theta", 1.0).value_or(1e6)
                                     : root.number_above("rope_local_base_freq", 1.0).value_or(1e4);
        synthetic.push_back(std::move(block));
        t.block.emplace(synthetic.back(), full && scaling_block ? scaling_block->path() : root.path("rope_parameters"));
      } else if (gemma4 && !parameters_block && (type == "full_attention" || type == "sliding_attention")) {
        synthetic.push_back(type == "full_attention"
                                ? json{{"rope_type", "proportional"}, {"partial_rotary_factor", 0.25}, {"rope_theta", 1e6}}
                                : json{{"rope_type", "default"}, {"rope_theta", 1e4}});
        t.block.emplace(synthetic.back(), root.path("rope_parameters"));
      } else {
        bad(root.path(cat("rope_parameters.", type.empty() ? "\"\"" : type)),
            "an entry for every layer type (an object, or null: no RoPE)", std::string("nothing (the key is missing)"));
      }
      per_type.emplace_back(type, std::move(t));
    }
  }

  std::vector<LayerRope> model_layers;
  model_layers.reserve(static_cast<size_t>(layers));
  const Node* rope_block = nullptr;  // the one block of a config without per-type entries
  if (!per_type.empty()) {
    // Gemma 4's full-attention layers have their own head size (global_head_dim, default 512).
    std::optional<json> wide_root;
    if (gemma4) {
      wide_root = root_value;
      (*wide_root)["head_dim"] = root.positive_int("global_head_dim").value_or(512);
    }
    std::map<std::string, std::optional<RopeSpec>> specs;
    for (const auto& [type, t] : per_type) {
      if (t.no_rope) {
        specs.emplace(type, std::nullopt);
        continue;
      }
      const Node type_root = gemma4 && type == "full_attention" ? Node(*wide_root, root_path) : root;
      HfConfigInfo typed = read_info(type_root, &*t.block);
      if (!info) info = typed;
      specs.emplace(type, typed.spec);
    }
    for (const auto& label : labels) model_layers.push_back(LayerRope{label, specs.at(label), std::nullopt});
  } else {
    // transformers: `rope_parameters = rope_scaling or rope_parameters` (an empty rope_scaling loses).
    const bool scaling_wins = scaling_block && (!scaling_block->value().empty() || !parameters_block);
    const Node* block = scaling_wins ? &*scaling_block : parameters_block ? &*parameters_block : nullptr;
    rope_block = block;
    info = read_info(root, block);
    if (scaling_wins && parameters_block) {
      std::string other;
      try {
        const HfConfigInfo alternative = read_info(root, &*parameters_block);
        if (!(alternative.spec == info->spec)) other = "would give " + alternative.spec.describe();
      } catch (const Error& e) {
        other = "is not valid: " + std::string(e.what()).substr(std::string("ropekit: ").size());
      }
      if (!other.empty())
        info->notes.push_back("rope_scaling and rope_parameters disagree: read rope_scaling, as transformers does "
                             "(rope_parameters " + other + ")");
    }
    for (const auto& label : labels) model_layers.push_back(LayerRope{label, info->spec, std::nullopt});
  }
  for (size_t i = 0; i < model_layers.size(); ++i) {
    if ((uses_rope && !(*uses_rope)[i]) || type_without_rope(model_type, model_layers[i].layer_type))
      model_layers[i].spec.reset();
  }
  read_attention_corrections(root, model_type, rope_block, model_layers, info->notes);
  ModelRope model(std::move(model_layers));
  const auto first = model.first_rope_layer();
  if (!first) throw Error("config: expected at least one layer with RoPE, got none (every layer is NoPE)");
  info->spec = *model.layer(*first).spec;
  info->model_type = model_type;
  info->model = std::move(model);
  return std::move(*info);
}

RopeSpec spec_from_hf_config_json(std::string_view json_text) { return hf_config_info_json(json_text).spec; }

HfConfigInfo hf_config_info(const std::filesystem::path& path) {
  std::error_code ec;
  // An ifstream opens a directory and then reads nothing, which would parse as a syntax error.
  if (std::filesystem::is_directory(path, ec))
    throw Error(cat("config path: expected a config.json file, got the directory \"", path.string(), "\""));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(cat("config path: expected a readable file, got \"", path.string(), "\""));
  // In chunks, stopping past the limit (a pipe or a /proc file has no size to ask for first).
  std::string text;
  std::vector<char> chunk(size_t{1} << 16);
  while (in && text.size() <= kMaxConfigBytes) {
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    text.append(chunk.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) throw Error(cat("config path: expected a readable file, got a read error in \"", path.string(), "\""));
  if (text.size() > kMaxConfigBytes)
    throw Error(cat("config path: expected a file of at most ", kMaxConfigBytes, " bytes (16 MiB), got a larger file \"",
                    path.string(), "\""));
  try {
    return hf_config_info_json(text);
  } catch (const Error& e) {
    throw Error(cat(path.string(), ": ", std::string(e.what()).substr(std::string("ropekit: ").size())));
  }
}

RopeSpec spec_from_hf_config(const std::filesystem::path& path) { return hf_config_info(path).spec; }

}  // namespace ropekit
