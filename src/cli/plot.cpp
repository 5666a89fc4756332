// `ropekit info --plot FILE.svg`: a hand-written, self-contained SVG with two panels.
//   1. wavelength per pair, original vs scaled, log y, the original (and scaled) context as lines;
//   2. relative-distance decay: mean over pairs of cos(delta * theta_i) against delta (log x).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "cli.hpp"

namespace ropekit::cli {
namespace {

constexpr double kWidth = 960, kHeight = 820;
constexpr double kLeft = 90, kRight = 200;  // right margin holds the legends

struct Box {
  double x0, y0, x1, y1;  // pixel corners (y0 top)
};

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string num(double x) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", x);
  return b;
}

// 1, 10, 100, 1k, 10k, 100k, 1M, ...
std::string decade_label(int e) {
  static const char* suffix[] = {"", "k", "M", "G", "T"};
  if (e < 0) {
    char b[16];
    std::snprintf(b, sizeof b, "1e%d", e);
    return b;
  }
  std::string digits = std::string("1") + std::string(static_cast<size_t>(e % 3), '0');
  return digits + suffix[std::min(e / 3, 4)];
}

void text(std::ostringstream& o, double x, double y, const std::string& s, const char* anchor = "start", int size = 12,
          const char* extra = "") {
  o << "<text x=\"" << num(x) << "\" y=\"" << num(y) << "\" font-size=\"" << size << "\" text-anchor=\"" << anchor
    << "\"" << extra << ">" << escape(s) << "</text>\n";
}

void line(std::ostringstream& o, double x0, double y0, double x1, double y1, const char* style) {
  o << "<line x1=\"" << num(x0) << "\" y1=\"" << num(y0) << "\" x2=\"" << num(x1) << "\" y2=\"" << num(y1) << "\" "
    << style << "/>\n";
}

// Polyline over finite points; a non-finite point breaks the line.
void polyline(std::ostringstream& o, const std::vector<std::pair<double, double>>& pts, const char* style) {
  std::vector<std::vector<std::pair<double, double>>> runs(1);
  for (const auto& p : pts) {
    if (std::isfinite(p.first) && std::isfinite(p.second)) {
      runs.back().push_back(p);
    } else if (!runs.back().empty()) {
      runs.emplace_back();
    }
  }
  for (const auto& run : runs) {
    if (run.empty()) continue;
    o << "<polyline fill=\"none\" " << style << " points=\"";
    for (const auto& [x, y] : run) o << num(x) << "," << num(y) << " ";
    o << "\"/>\n";
  }
}

void frame(std::ostringstream& o, const Box& b, const std::string& title, const std::string& xlabel,
           const std::string& ylabel, const std::string& id) {
  o << "<g id=\"" << id << "\">\n";
  o << "<rect x=\"" << num(b.x0) << "\" y=\"" << num(b.y0) << "\" width=\"" << num(b.x1 - b.x0) << "\" height=\""
    << num(b.y1 - b.y0) << "\" fill=\"#fbfbfb\" stroke=\"#333\"/>\n";
  text(o, (b.x0 + b.x1) / 2, b.y0 - 10, title, "middle", 15, " font-weight=\"bold\"");
  text(o, (b.x0 + b.x1) / 2, b.y1 + 38, xlabel, "middle", 13);
  o << "<text x=\"" << num(b.x0 - 62) << "\" y=\"" << num((b.y0 + b.y1) / 2) << "\" font-size=\"13\" "
    << "text-anchor=\"middle\" transform=\"rotate(-90 " << num(b.x0 - 62) << " " << num((b.y0 + b.y1) / 2) << ")\">"
    << escape(ylabel) << "</text>\n";
}

void legend(std::ostringstream& o, double x, double y, const std::vector<std::pair<std::string, std::string>>& items) {
  for (size_t i = 0; i < items.size(); ++i) {
    const double yy = y + 20.0 * static_cast<double>(i);
    line(o, x, yy, x + 28, yy, items[i].second.c_str());
    text(o, x + 34, yy + 4, items[i].first, "start", 12);
  }
}

const char* kScaled = "stroke=\"#1f5fbf\" stroke-width=\"2.2\"";
const char* kOriginal = "stroke=\"#888\" stroke-width=\"1.8\" stroke-dasharray=\"6,4\"";
const char* kOriginalContext = "stroke=\"#c0392b\" stroke-width=\"1.4\" stroke-dasharray=\"8,4\"";
const char* kScaledContext = "stroke=\"#e08e0b\" stroke-width=\"1.4\" stroke-dasharray=\"2,3\"";

void wavelength_panel(std::ostringstream& o, const PlotInput& in, const Box& b) {
  const auto n = static_cast<double>(in.rows.size());
  double lo = std::log10(static_cast<double>(std::min(in.original_context, in.context)));
  double hi = std::log10(static_cast<double>(std::max(in.original_context, in.context)));
  for (const auto& r : in.rows) {
    for (double w : {r.wavelength, r.original_wavelength}) {
      if (std::isfinite(w) && w > 0) {
        lo = std::min(lo, std::log10(w));
        hi = std::max(hi, std::log10(w));
      }
    }
  }
  // Finite here (contexts >= 1, wavelengths within double range): at most ~320 decades.
  const int e0 = static_cast<int>(std::floor(lo)), e1 = std::max(static_cast<int>(std::ceil(hi)), e0 + 1);
  const int every = std::max(1, (e1 - e0 + 15) / 16);  // at most 17 grid lines
  auto X = [&](double i) { return b.x0 + 10 + (b.x1 - b.x0 - 20) * (n > 1 ? i / (n - 1) : 0.5); };
  auto Y = [&](double w) { return b.y1 - (b.y1 - b.y0) * (std::log10(w) - e0) / (e1 - e0); };
  frame(o, b, "Wavelength per pair (tokens, log scale)", "pair index i (frequency falls as i grows)",
        "wavelength 2\xcf\x80/\xce\xb8\xe1\xb5\xa2 (tokens)", "panel-wavelength");
  for (int e = e0; e <= e1; e += every) {
    const double y = Y(std::pow(10.0, e));
    line(o, b.x0, y, b.x1, y, "stroke=\"#ddd\"");
    text(o, b.x0 - 6, y + 4, decade_label(e), "end", 11);
  }
  const int step = std::max(1, static_cast<int>(std::ceil(n / 16)));
  for (int i = 0; i < static_cast<int>(n); i += step) text(o, X(i), b.y1 + 16, std::to_string(i), "middle", 11);
  std::vector<std::pair<double, double>> scaled, original;
  for (const auto& r : in.rows) {
    const auto i = static_cast<double>(r.index);
    original.emplace_back(X(i), std::isfinite(r.original_wavelength) ? Y(r.original_wavelength) : NAN);
    scaled.emplace_back(X(i), std::isfinite(r.wavelength) ? Y(r.wavelength) : NAN);
  }
  polyline(o, original, kOriginal);
  polyline(o, scaled, kScaled);
  const double yo = Y(static_cast<double>(in.original_context));
  line(o, b.x0, yo, b.x1, yo, kOriginalContext);
  text(o, b.x0 + 6, yo - 5, "original context " + std::to_string(in.original_context), "start", 11,
       " fill=\"#c0392b\"");
  if (in.context != in.original_context) {
    const double yc = Y(static_cast<double>(in.context));
    line(o, b.x0, yc, b.x1, yc, kScaledContext);
    text(o, b.x0 + 6, yc - 5, "scaled context " + std::to_string(in.context), "start", 11, " fill=\"#b06d00\"");
  }
  std::vector<std::pair<std::string, std::string>> items = {
      {"scaled", kScaled}, {"original (no scaling)", kOriginal}, {"original context", kOriginalContext}};
  if (in.context != in.original_context) items.emplace_back("scaled context", kScaledContext);
  // Pairs that no longer rotate (truncated basis: theta = 0) have no finite wavelength: mark them
  // on the top edge.
  bool removed = false;
  for (const auto& r : in.rows) {
    if (std::isfinite(r.wavelength)) continue;
    removed = true;
    const double x = X(static_cast<double>(r.index));
    o << "<polygon points=\"" << num(x - 4) << "," << num(b.y0 + 2) << " " << num(x + 4) << "," << num(b.y0 + 2) << " "
      << num(x) << "," << num(b.y0 + 9) << "\" fill=\"#1f5fbf\"/>\n";
  }
  legend(o, b.x1 + 16, b.y0 + 14, items);
  if (removed) {
    const double y = b.y0 + 14 + 20.0 * static_cast<double>(items.size());
    o << "<polygon points=\"" << num(b.x1 + 26) << "," << num(y - 4) << " " << num(b.x1 + 34) << "," << num(y - 4)
      << " " << num(b.x1 + 30) << "," << num(y + 3) << "\" fill=\"#1f5fbf\"/>\n";
    text(o, b.x1 + 50, y + 4, "removed (\xce\xb8 = 0)", "start", 12);
  }
  o << "</g>\n";
}

double mean_cos(const std::vector<PairRow>& rows, double delta, bool original) {
  double sum = 0;
  for (const auto& r : rows) sum += std::cos(delta * (original ? r.original_inv_freq : r.inv_freq));
  return rows.empty() ? 1.0 : sum / static_cast<double>(rows.size());
}

void decay_panel(std::ostringstream& o, const PlotInput& in, const Box& b) {
  const double dmax = std::max(10.0, static_cast<double>(in.context));
  const int samples = 700;
  std::vector<double> deltas, scaled, original;
  for (int s = 0; s <= samples; ++s) {
    const double d = std::pow(dmax, static_cast<double>(s) / samples);  // 1 .. dmax, geometric
    deltas.push_back(d);
    scaled.push_back(mean_cos(in.rows, d, false));
    original.push_back(mean_cos(in.rows, d, true));
  }
  double lo = 0;
  for (size_t i = 0; i < deltas.size(); ++i) lo = std::min({lo, scaled[i], original[i]});
  if (!std::isfinite(lo)) lo = -1.0;  // a mean of cosines: never below -1
  lo = std::floor(lo * 5) / 5 - 0.0001;
  const double e1 = std::log10(dmax);
  auto X = [&](double d) { return b.x0 + (b.x1 - b.x0) * std::log10(d) / e1; };
  auto Y = [&](double v) { return b.y1 - (b.y1 - b.y0) * (v - lo) / (1.0 - lo); };
  frame(o, b, "Relative-distance decay: mean over pairs of cos(\xce\xb4\xc2\xb7\xce\xb8\xe1\xb5\xa2)",
        "relative distance \xce\xb4 (tokens, log scale)", "mean cos(\xce\xb4\xc2\xb7\xce\xb8\xe1\xb5\xa2)", "panel-decay");
  for (int tick = static_cast<int>(std::ceil(lo * 5)); tick <= 5; ++tick) {
    const double v = tick / 5.0;
    const double y = Y(v);
    line(o, b.x0, y, b.x1, y, std::fabs(v) < 1e-9 ? "stroke=\"#999\"" : "stroke=\"#ddd\"");
    char t[16];
    std::snprintf(t, sizeof t, "%.1f", std::fabs(v) < 1e-9 ? 0.0 : v);
    text(o, b.x0 - 6, y + 4, t, "end", 11);
  }
  for (int e = 0; e <= static_cast<int>(std::floor(e1)); ++e) {
    const double x = X(std::pow(10.0, e));
    line(o, x, b.y0, x, b.y1, "stroke=\"#eee\"");
    text(o, x, b.y1 + 16, decade_label(e), "middle", 11);
  }
  std::vector<std::pair<double, double>> ps, po;
  for (size_t i = 0; i < deltas.size(); ++i) {
    ps.emplace_back(X(deltas[i]), Y(scaled[i]));
    po.emplace_back(X(deltas[i]), Y(original[i]));
  }
  polyline(o, po, kOriginal);
  polyline(o, ps, kScaled);
  const double xo = X(static_cast<double>(std::max<int64_t>(in.original_context, 1)));
  if (xo <= b.x1) {
    line(o, xo, b.y0, xo, b.y1, kOriginalContext);
    text(o, xo - 4, b.y0 + 14, "original context", "end", 11, " fill=\"#c0392b\"");
  }
  legend(o, b.x1 + 16, b.y0 + 14, {{"scaled", kScaled}, {"original (no scaling)", kOriginal}});
  o << "</g>\n";
}

// One page: title, the spec on one or two lines, the two panels.
void page(std::ostringstream& o, const PlotInput& in) {
  text(o, kWidth / 2, 22, in.title, "middle", 15, " font-weight=\"bold\"");
  // The spec description on at most two lines, split at a ", " near the middle when long.
  std::vector<std::string> lines{in.subtitle};
  if (in.subtitle.size() > 120) {
    const size_t cut = in.subtitle.find(", ", in.subtitle.size() / 2);
    const size_t space = in.subtitle.rfind(' ', in.subtitle.size() / 2);
    const size_t at = cut != std::string::npos ? cut + 1 : space;
    if (at != std::string::npos) lines = {in.subtitle.substr(0, at), in.subtitle.substr(at + 1)};
  }
  for (size_t i = 0; i < lines.size(); ++i) text(o, kWidth / 2, 40 + 15.0 * static_cast<double>(i), lines[i], "middle", 11);
  wavelength_panel(o, in, {kLeft, 100, kWidth - kRight, 410});
  decay_panel(o, in, {kLeft, 490, kWidth - kRight, 770});
}

}  // namespace

std::string plot_svg(const std::vector<PlotInput>& pages) {
  if (pages.empty()) throw UsageError("--plot: nothing to draw (no layer has RoPE)");
  for (const auto& in : pages) {
    if (in.original_context < 1 || in.context < 1 || in.original_context > kMaxContext || in.context > kMaxContext)
      throw UsageError("--plot: expected contexts in [1, " + std::to_string(kMaxContext) + "], got original " +
                       std::to_string(in.original_context) + " and scaled " + std::to_string(in.context));
  }
  const double height = kHeight * static_cast<double>(pages.size());
  std::ostringstream o;
  o << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kWidth << "\" height=\"" << height
    << "\" viewBox=\"0 0 " << kWidth << " " << height << "\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n";
  o << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  for (size_t i = 0; i < pages.size(); ++i) {
    o << "<g transform=\"translate(0," << kHeight * static_cast<double>(i) << ")\">\n";
    page(o, pages[i]);
    o << "</g>\n";
  }
  o << "</svg>\n";
  return o.str();
}

}  // namespace ropekit::cli
