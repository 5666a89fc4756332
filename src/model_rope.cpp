#include "ropekit/model_rope.hpp"

#include <algorithm>

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
  for (size_t i = 0; i < layers_.size(); ++i) {
    const LayerRope& l = layers_[i];
    auto it = std::find_if(out.begin(), out.end(), [&](const LayerGroup& g) { return g.spec == l.spec; });
    if (it == out.end()) it = out.insert(out.end(), LayerGroup{l.spec, {}, {}});
    if (std::find(it->layer_types.begin(), it->layer_types.end(), l.layer_type) == it->layer_types.end())
      it->layer_types.push_back(l.layer_type);
    it->layers.push_back(static_cast<int64_t>(i));
  }
  return out;
}

}  // namespace ropekit
