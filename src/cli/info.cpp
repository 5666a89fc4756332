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
          [](const detail::one_of<Linear, Yarn, Llama3> auto& x) { return x.factor; },
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
    PairRow r{static_cast<int64_t>(i), scaled[i], original[i], wavelength(scaled[i]), wavelength(original[i]), 0.0, ""};
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

int cmd_info(const std::vector<std::string>& tokens, std::ostream& out) {
  std::set<std::string> values = spec_value_flags();
  values.insert({"seq-len", "plot"});
  const Args args(tokens, "info", values, {"json"});
  const Resolved r = resolve(args);
  const int64_t context = scaled_context(r);
  const int64_t original = original_context(r);
  const int64_t seq_len = args.integer("seq-len").value_or(context);
  const auto rows = pair_rows(r.spec, seq_len);
  const double attention = attention_factor(r.spec);
  const std::string label = r.source == "flags" ? "flags" : r.source + " " + r.name;

  if (auto plot = args.text("plot"))
    write_replacing(*plot, plot_svg({label, r.spec.describe(), rows, original, std::max(context, seq_len)}));

  if (args.flag("json")) {
    nlohmann::json j;
    j["source"] = r.source;
    j["name"] = r.name.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.name);
    j["spec"] = {{"description", r.spec.describe()}, {"head_dim", r.spec.head_dim()},
                 {"rotary_dim", r.spec.rotary_dim()}, {"base", r.spec.base()},
                 {"style", r.spec.style_name()},      {"scaling", r.spec.scaling_name()}};
    j["max_position_embeddings"] =
        r.max_position_embeddings ? nlohmann::json(*r.max_position_embeddings) : nlohmann::json(nullptr);
    j["original_context"] = original;
    j["context"] = context;
    j["seq_len"] = seq_len;
    j["attention_factor"] = attention;
    j["num_attention_heads"] = r.num_attention_heads ? nlohmann::json(r.num_attention_heads) : nlohmann::json(nullptr);
    j["num_key_value_heads"] = r.num_key_value_heads ? nlohmann::json(r.num_key_value_heads) : nlohmann::json(nullptr);
    j["notes"] = r.notes;
    auto& pairs = j["pairs"] = nlohmann::json::array();
    for (const auto& row : rows) {
      pairs.push_back({{"index", row.index},
                       {"inv_freq", row.inv_freq},
                       {"original_inv_freq", row.original_inv_freq},
                       {"wavelength", finite_or_null(row.wavelength)},
                       {"original_wavelength", finite_or_null(row.original_wavelength)},
                       {"ratio", finite_or_null(row.ratio)},
                       {"regime", row.regime}});
    }
    out << j.dump(2) << "\n";
    return 0;
  }

  out << "source:           " << label << "\n";
  out << "spec:             " << r.spec.describe() << "\n";
  out << "attention factor: " << attention << "  (multiplies cos and sin)\n";
  out << "context:          original " << original << ", scaled " << context << "; frequencies for seq_len " << seq_len
      << "\n";
  if (r.num_attention_heads) out << "heads:            q " << r.num_attention_heads << ", k " << r.num_key_value_heads << "\n";
  for (const auto& note : r.notes) out << "note:             " << note << "\n";
  out << "\n";
  char line[200];
  std::snprintf(line, sizeof line, "%5s  %13s  %14s  %14s  %9s  %s\n", "pair", "inv_freq", "wavelength", "orig_wavelen",
                "ratio", "regime");
  out << line;
  for (const auto& row : rows) {
    std::snprintf(line, sizeof line, "%5lld  %13.6e  %14.2f  %14.2f  %9.4f  %s\n", static_cast<long long>(row.index),
                  row.inv_freq, row.wavelength, row.original_wavelength, row.ratio, row.regime.c_str());
    out << line;
  }
  out << "\nwavelength = 2*pi / inv_freq in tokens; ratio = wavelength / original wavelength;\n"
         "extrapolated = frequency unchanged, interpolated = divided by the full factor, blended = in between.\n";
  return 0;
}

}  // namespace ropekit::cli
