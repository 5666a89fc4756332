// `ropekit info`: the resolved spec, the attention factor and what the scaling does to each pair.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <numbers>
#include <random>

#include "cli.hpp"
#include "visit.hpp"
#include "ropekit/frequencies.hpp"

namespace ropekit::cli {
namespace {

// Which scaling factor marks a pair as fully interpolated (0: the scaling has no single factor).
double full_factor(const Scaling& s) {
  using namespace scaling;
  return std::visit(
      detail::Overloaded{
          [](const detail::one_of<Linear, Yarn, Llama3, Proportional> auto& x) { return x.factor; },
          [](const detail::one_of<None, NtkAware, DynamicNtk, LongRope, Truncated> auto&) { return 0.0; },
      },
      s);
}

bool close(double a, double b) { return std::fabs(a - b) <= 1e-9 * std::max(std::fabs(a), std::fabs(b)); }

double wavelength(double inv_freq) {
  return inv_freq > 0 ? 2.0 * std::numbers::pi / inv_freq : std::numeric_limits<double>::infinity();
}

nlohmann::json finite_or_null(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); }

// Writes a temporary file beside `path` and renames it over `path`: a failed write leaves no file
// and no partial one.
void write_replacing(const std::string& path, const std::string& text) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path temp =
      target.parent_path() / ("." + target.filename().string() + ".tmp" + std::to_string(std::random_device{}()));
  std::error_code ec;
  {
    std::ofstream file(temp, std::ios::binary);
    if (!file) throw UsageError("--plot: cannot write \"" + path + "\"");
    file << text;
    file.close();
    if (!file) {
      fs::remove(temp, ec);
      throw UsageError("--plot: writing \"" + path + "\" failed");
    }
  }
  fs::rename(temp, target, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(temp, ignored);
    throw UsageError("--plot: cannot replace \"" + path + "\": " + ec.message());
  }
}

}  // namespace

std::vector<PairRow> pair_rows(const RopeSpec& spec, int64_t seq_len) {
  SpecParams plain = spec.params();
  plain.scaling = scaling::None{};
  const auto original = inv_freq(RopeSpec(plain), seq_len);
  const auto scaled = inv_freq(spec, seq_len);
  const double factor = full_factor(spec.scaling());
  const bool truncated = std::holds_alternative<scaling::Truncated>(spec.scaling());
  std::vector<PairRow> rows;
  for (size_t i = 0; i < scaled.size(); ++i) {
    PairRow r{static_cast<int64_t>(i), scaled[i], original[i], wavelength(scaled[i]), wavelength(original[i]), 0.0, "", ""};
    if (spec.position_axes() > 1) {  // which position turns the pair: M-RoPE's t / h / w, axial's axis 0 / 1
      const int axis = spec.pair_axis(static_cast<int64_t>(i));
      r.axis = spec.mrope() ? std::string(1, "thw"[axis]) : std::to_string(axis);
    }
    r.ratio = original[i] / scaled[i];  // = wavelength / original_wavelength (inf when removed)
    if (scaled[i] == 0.0) {
      r.regime = "removed";
    } else if (close(scaled[i], original[i])) {
      r.regime = "extrapolated";
    } else if (truncated) {
      r.regime = "constant";
    } else if (factor > 0 && close(r.ratio, factor)) {
      r.regime = "interpolated";
    } else {
      r.regime = "blended";
    }
    rows.push_back(r);
  }
  return rows;
}

namespace {

// "0-4, 6-10, 12" for sorted layer indices.
std::string layer_ranges(const std::vector<int64_t>& layers) {
  std::string out;
  for (size_t i = 0; i < layers.size();) {
    size_t j = i;
    while (j + 1 < layers.size() && layers[j + 1] == layers[j] + 1) ++j;
    if (!out.empty()) out += ", ";
    out += std::to_string(layers[i]);
    if (j > i) out += "-" + std::to_string(layers[j]);
    i = j + 1;
  }
  return out;
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + (item.empty() ? std::string("unnamed") : item);
  return out;
}

// What `info` shows for one spec: its rows at the sequence length asked for (default: its context).
struct SpecView {
  Resolved r;
  int64_t original;
  int64_t context;
  int64_t seq_len;
  std::vector<PairRow> rows;
  double attention;
};

SpecView view_of(const Resolved& base, const RopeSpec& spec, std::optional<int64_t> seq_len) {
  // Without the model: a view per distinct RoPE must not copy every layer.
  Resolved r{spec, base.source, base.name, base.max_position_embeddings, base.num_attention_heads,
             base.num_key_value_heads, base.notes, std::nullopt};
  const int64_t original = original_context(r), context = scaled_context(r);
  const int64_t n = seq_len.value_or(context);
  auto rows = pair_rows(spec, n);
  return {std::move(r), original, context, n, std::move(rows), attention_factor(spec)};
}

nlohmann::json spec_json(const RopeSpec& spec) {
  return {{"description", spec.describe()}, {"head_dim", spec.head_dim()}, {"rotary_dim", spec.rotary_dim()},
          {"base", spec.base()},           {"style", spec.style_name()},   {"scaling", spec.scaling_name()}};
}

nlohmann::json pairs_json(const std::vector<PairRow>& rows) {
  auto pairs = nlohmann::json::array();
  for (const auto& row : rows) {
    pairs.push_back({{"index", row.index},
                     {"inv_freq", row.inv_freq},
                     {"original_inv_freq", row.original_inv_freq},
                     {"wavelength", finite_or_null(row.wavelength)},
                     {"original_wavelength", finite_or_null(row.original_wavelength)},
                     {"ratio", finite_or_null(row.ratio)},
                     {"regime", row.regime},
                     {"axis", row.axis.empty() ? nlohmann::json(nullptr) : nlohmann::json(row.axis)}});
  }
  return pairs;
}

// Today's top-level schema for one spec (layer 0's, the first RoPE layer's, or --layer N's).
nlohmann::json top_level_json(const SpecView& v) {
  const Resolved& r = v.r;
  nlohmann::json j;
  j["source"] = r.source;
  j["name"] = r.name.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.name);
  j["spec"] = spec_json(r.spec);
  j["max_position_embeddings"] =
      r.max_position_embeddings ? nlohmann::json(*r.max_position_embeddings) : nlohmann::json(nullptr);
  j["original_context"] = v.original;
  j["context"] = v.context;
  j["seq_len"] = v.seq_len;
  j["attention_factor"] = v.attention;
  j["num_attention_heads"] = r.num_attention_heads ? nlohmann::json(r.num_attention_heads) : nlohmann::json(nullptr);
  j["num_key_value_heads"] = r.num_key_value_heads ? nlohmann::json(r.num_key_value_heads) : nlohmann::json(nullptr);
  j["notes"] = r.notes;
  j["pairs"] = pairs_json(v.rows);
  return j;
}

// A layer's query scale and softmax scale factor (ModelRope), null / 1 when it has none.
nlohmann::json query_scale_json(const std::optional<QueryScale>& q) {
  if (!q) return nullptr;
  return {{"description", q->describe()}, {"factor", q->factor}, {"beta", q->beta}, {"length", q->length}, {"shift", q->shift}};
}

void add_corrections(nlohmann::json& j, const std::optional<QueryScale>& q, double softmax_scale_factor) {
  j["query_scale"] = query_scale_json(q);
  j["softmax_scale_factor"] = softmax_scale_factor;
}

void print_corrections(std::ostream& out, const std::optional<QueryScale>& q, double softmax_scale_factor) {
  if (q) {
    out << "query scale:      q times t(p) = " << q->describe() << ";";
    // Where t steps: the first position of steps 1, 3 and 31 (and the start).
    for (int64_t steps : {int64_t{0}, int64_t{1}, int64_t{3}, int64_t{31}}) {
      const int64_t p = std::max<int64_t>(steps * q->length - q->shift, 0);
      out << (steps ? ", " : " ") << "t(" << p << ") = " << q->at(p);
    }
    out << "\n";
  }
  if (softmax_scale_factor != 1.0)
    out << "softmax scale:    times " << softmax_scale_factor << " (on the attention's softmax scale, 1/sqrt(q.k head size))\n";
}

void print_block(std::ostream& out, const SpecView& v) {
  out << "spec:             " << v.r.spec.describe() << "\n";
  out << "attention factor: " << v.attention << "  (multiplies cos and sin)\n";
  out << "context:          original " << v.original << ", scaled " << v.context << "; frequencies for seq_len "
      << v.seq_len << "\n";
  out << "\n";
  char line[200];
  // The last columns: the regime, then the axis for multi-axis specs (padded to line up).
  const bool axes = !v.rows.empty() && !v.rows.front().axis.empty();
  auto last = [&](const std::string& regime, const std::string& axis) {
    if (!axes) return regime + "\n";
    char cell[64];
    std::snprintf(cell, sizeof cell, "%-12s  %s\n", regime.c_str(), axis.c_str());
    return std::string(cell);
  };
  std::snprintf(line, sizeof line, "%5s  %13s  %14s  %14s  %9s  ", "pair", "inv_freq", "wavelength", "orig_wavelen", "ratio");
  out << line << last("regime", "axis");
  for (const auto& row : v.rows) {
    std::snprintf(line, sizeof line, "%5lld  %13.6e  %14.2f  %14.2f  %9.4f  ", static_cast<long long>(row.index),
                  row.inv_freq, row.wavelength, row.original_wavelength, row.ratio);
    out << line << last(row.regime, row.axis);
  }
}

}  // namespace

int cmd_info(const std::vector<std::string>& tokens, std::ostream& out) {
  std::set<std::string> values = spec_value_flags();
  values.insert({"seq-len", "plot", "layer"});
  const Args args(tokens, "info", values, {"json"});
  const Resolved r = resolve(args);
  const auto seq_len = args.integer("seq-len");
  const std::string label = r.source == "flags" ? "flags" : r.source + " " + r.name;
  const bool json = args.flag("json");

  // --layer N: that layer alone, in the one-spec schema.
  if (const auto index = args.integer("layer")) {
    if (!r.model)
      throw UsageError("--layer: expected a config.json or a per-layer preset (one whose config has layers), got " + label);
    if (*index < 0 || *index >= r.model->num_layers())
      throw UsageError("--layer: expected a layer in [0, " + std::to_string(r.model->num_layers()) + "), got " +
                       std::to_string(*index));
    const LayerRope& layer = r.model->layer(*index);
    if (!layer.spec) {
      if (json) {
        nlohmann::json j{{"source", r.source}, {"name", r.name}, {"layer", *index},
                         {"layer_type", layer.layer_type}, {"rope", false}};
        add_corrections(j, layer.query_scale, layer.softmax_scale_factor);
        out << j.dump(2) << "\n";
      } else {
        out << "source:           " << label << "\n";
        out << "layer:            " << *index << " (" << joined({layer.layer_type}) << "): no RoPE (NoPE)\n";
        print_corrections(out, layer.query_scale, layer.softmax_scale_factor);
      }
      return 0;
    }
    const SpecView v = view_of(r, *layer.spec, seq_len);
    if (auto plot = args.text("plot"))
      write_replacing(*plot, plot_svg({{label + " layer " + std::to_string(*index), v.r.spec.describe(), v.rows,
                                        v.original, std::max(v.context, v.seq_len)}}));
    if (json) {
      nlohmann::json j = top_level_json(v);
      j["layer"] = *index;
      j["layer_type"] = layer.layer_type;
      j["rope"] = true;
      add_corrections(j, layer.query_scale, layer.softmax_scale_factor);
      out << j.dump(2) << "\n";
      return 0;
    }
    out << "source:           " << label << "\n";
    out << "layer:            " << *index << " (" << joined({layer.layer_type}) << ")\n";
    print_corrections(out, layer.query_scale, layer.softmax_scale_factor);
    print_block(out, v);
    return 0;
  }

  const SpecView top = view_of(r, r.spec, seq_len);
  // One view per distinct RoPE of the model (a single group for a model whose layers all agree).
  std::vector<LayerGroup> groups;
  if (r.model) groups = r.model->groups();
  std::vector<SpecView> views;
  std::vector<size_t> view_of_layer(r.model ? static_cast<size_t>(r.model->num_layers()) : 0);
  for (const auto& g : groups) {
    if (!g.spec) continue;
    for (int64_t i : g.layers) view_of_layer[static_cast<size_t>(i)] = views.size();
    views.push_back(view_of(r, *g.spec, seq_len));
  }
  const bool per_layer = groups.size() > 1;
  // The first RoPE layer's corrections go with the top-level fields.
  const LayerRope* first = r.model && r.model->first_rope_layer() ? &r.model->layer(*r.model->first_rope_layer()) : nullptr;
  const std::optional<QueryScale> top_query_scale = first ? first->query_scale : std::nullopt;
  const double top_softmax = first ? first->softmax_scale_factor : 1.0;

  if (auto plot = args.text("plot")) {
    std::vector<PlotInput> pages;
    if (per_layer) {
      size_t k = 0;
      for (const auto& g : groups) {
        if (!g.spec) continue;
        const SpecView& v = views[k++];
        pages.push_back({label + ", layers " + layer_ranges(g.layers) + " (" + joined(g.layer_types) + ")",
                         v.r.spec.describe(), v.rows, v.original, std::max(v.context, v.seq_len)});
      }
    } else {
      pages.push_back({label, top.r.spec.describe(), top.rows, top.original, std::max(top.context, top.seq_len)});
    }
    write_replacing(*plot, plot_svg(pages));
  }

  if (json) {
    nlohmann::json j = top_level_json(top);
    add_corrections(j, top_query_scale, top_softmax);
    if (r.model) {
      auto& layers = j["layers"] = nlohmann::json::array();
      for (int64_t i = 0; i < r.model->num_layers(); ++i) {
        const LayerRope& layer = r.model->layer(i);
        nlohmann::json l{{"index", i}, {"layer_type", layer.layer_type}, {"rope", layer.spec.has_value()}};
        add_corrections(l, layer.query_scale, layer.softmax_scale_factor);
        if (layer.spec) {
          const size_t k = view_of_layer[static_cast<size_t>(i)];
          l["spec"] = spec_json(*layer.spec);
          l["attention_factor"] = views[k].attention;
          l["pairs"] = pairs_json(views[k].rows);
        }
        layers.push_back(std::move(l));
      }
    }
    out << j.dump(2) << "\n";
    return 0;
  }

  out << "source:           " << label << "\n";
  if (r.num_attention_heads) out << "heads:            q " << r.num_attention_heads << ", k " << r.num_key_value_heads << "\n";
  for (const auto& note : r.notes) out << "note:             " << note << "\n";
  if (!per_layer) {
    print_corrections(out, top_query_scale, top_softmax);
    print_block(out, top);
  } else {
    size_t with_rope = 0;
    for (const auto& g : groups) with_rope += g.spec ? 1 : 0;
    out << "layers:           " << r.model->num_layers() << ", " << with_rope << " distinct RoPE"
        << (with_rope == 1 ? "" : "s") << (with_rope < groups.size() ? " and NoPE layers" : "") << "\n";
    size_t k = 0;
    for (const auto& g : groups) {
      out << "\n== layers " << layer_ranges(g.layers) << " (" << joined(g.layer_types) << ")";
      if (!g.spec) {
        out << ": no RoPE (NoPE)\n";
        print_corrections(out, g.query_scale, g.softmax_scale_factor);
        continue;
      }
      out << "\n";
      print_corrections(out, g.query_scale, g.softmax_scale_factor);
      print_block(out, views[k++]);
    }
  }
  out << "\nwavelength = 2*pi / inv_freq in tokens; ratio = wavelength / original wavelength;\n"
         "extrapolated = frequency unchanged, interpolated = divided by the full factor, blended = in between,\n"
         "removed = frequency 0 (the pair passes through).\n";
  return 0;
}

}  // namespace ropekit::cli
