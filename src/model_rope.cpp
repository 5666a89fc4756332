#include "ropekit/model_rope.hpp"

#include <set>
#include <string>
#include <unordered_map>

#include "check.hpp"
#include "ropekit/error.hpp"

namespace ropekit {

ModelRope::ModelRope(std::vector<LayerRope> layers) : layers_(std::move(layers)) {
  if (layers_.empty()) detail::fail("layers", "at least one layer", "none");
}

const LayerRope& ModelRope::layer(int64_t index) const {
  if (index < 0 || index >= num_layers())
    detail::fail("layer", detail::cat("an index in [0, ", num_layers(), ")"), index);
  return layers_[static_cast<size_t>(index)];
}

std::optional<int64_t> ModelRope::first_rope_layer() const {
  for (size_t i = 0; i < layers_.size(); ++i)
    if (layers_[i].spec) return static_cast<int64_t>(i);
  return std::nullopt;
}

std::vector<LayerGroup> ModelRope::groups() const {
  std::vector<LayerGroup> out;
  // Candidates by description (equal specs describe alike), so many layers and groups stay linear.
  std::unordered_map<std::string, std::vector<size_t>> by_description;
  std::vector<std::set<std::string>> labels;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const LayerRope& l = layers_[i];
    auto& candidates = by_description[l.spec ? l.spec->describe() : std::string()];
    size_t g = out.size();
    for (size_t c : candidates)
      if (out[c].spec == l.spec && out[c].query_scale == l.query_scale && out[c].softmax_scale_factor == l.softmax_scale_factor)
        g = c;
    if (g == out.size()) {
      out.push_back(LayerGroup{l.spec, l.query_scale, l.softmax_scale_factor, {}, {}});
      labels.emplace_back();
      candidates.push_back(g);
    }
    if (labels[g].insert(l.layer_type).second) out[g].layer_types.push_back(l.layer_type);
    out[g].layers.push_back(static_cast<int64_t>(i));
  }
  return out;
}

}  // namespace ropekit
