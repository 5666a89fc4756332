#pragma once
// Positions of multimodal models. M-RoPE positions of a prompt (HF's get_rope_index of Qwen2-VL,
// Qwen2.5-VL, Qwen3-VL, Qwen3.5 and GLM-4V, transformers 5.x): three position axes (time, height,
// width) for every token, for Positions::token_ids(ids, 3) (ropekit/apply.hpp), and the
// per-sequence delta that decode adds. Vision-encoder patch positions for axial 2-D RoPE.
#include <cstdint>
#include <optional>
#include <vector>

#include "ropekit/export.hpp"
#include "ropekit/tensor_view.hpp"

namespace ropekit {

// One image or video as the vision encoder saw it: patches in time, height and width before the
// spatial merge (a row of HF's image_grid_thw / video_grid_thw).
struct VisionGrid {
  int64_t t = 1;
  int64_t h = 0;
  int64_t w = 0;
  bool operator==(const VisionGrid&) const = default;
};

struct MRopeIndexOptions {
  int64_t spatial_merge_size = 2;  // vision_config.spatial_merge_size: h and w of the grid divide by it
  // Qwen3-VL, Qwen3.5, GLM-4V: timestamps separate a video's frames, so each frame is a group of
  // its own (a grid of t = 1, the video's grid repeated t times).
  bool split_video_frames = false;
  // Qwen2.5-VL: video frame i sits at time floor(i * tokens_per_second * seconds_per_grid[video])
  // (float32 products, as torch); 0: frame i at time i (the others, and every image).
  double tokens_per_second = 0.0;
};

struct MRopeIndex {
  int64_t batch = 0;
  int64_t seq = 0;
  std::vector<int64_t> positions;  // 3 x batch x seq, axis-major (HF's position_ids (3, B, S)); padding 0
  std::vector<int64_t> deltas;     // batch: largest position + 1 - unpadded length (HF's rope_deltas)
};

// token_types: batch x seq (b-major), 0 text, 1 image, 2 video (HF's mm_token_type_ids). Each run of
// image (video) tokens is one image (video, or one frame with split_video_frames) and takes the
// next grid, in order across the batch: t (h / m) (w / m) tokens, m the spatial merge size, at
// time start + (frame), height start + row, width start + column; text continues from
// start + max(h, w) / m. Text tokens count up on all three axes. attention_mask (optional,
// batch x seq, 0 or 1): masked tokens are skipped and get position 0. seconds_per_grid: one per
// video (Qwen2.5-VL's second_per_grid_ts; absent: 1).
// Throws Error naming the argument: a run whose length is not its grid's token count, too few or
// unused grids, grids that do not divide by the merge size, bad types or mask values.
ROPEKIT_API MRopeIndex mrope_index(IndexView token_types, int64_t batch, int64_t seq,
                                   const std::vector<VisionGrid>& image_grids,
                                   const std::vector<VisionGrid>& video_grids, const MRopeIndexOptions& options = {},
                                   IndexView attention_mask = {}, const std::vector<double>& seconds_per_grid = {});

struct VisionPositionOptions {
  // m x m blocks of patches in turn, row-major inside and across blocks: the order the Qwen2-VL
  // family's (and GLM-4V's) vision towers hold patches in for their spatial merge; 1: row-major
  // (Pixtral, Llama 4).
  int64_t spatial_merge_size = 1;
  bool columns_first = false;  // axis 0 the column, axis 1 the row (Llama 4); else row then column
  int64_t start = 0;           // added to both coordinates (Llama 4: 1)
  bool cls_token = false;      // one more token after each grid's patches, at (0, 0) (Llama 4's CLS: unrotated)
};

// The 2-D positions of the vision patches of every grid in order, axis-major (2, N) for
// Positions::token_ids(ids, 2) and an axial spec (ropekit/spec.hpp Axial2d): a grid's t frames
// each repeat its h x w patches (HF's get_vision_position_ids, transposed). Throws Error naming
// the grid that does not divide by the merge size.
ROPEKIT_API std::vector<int64_t> vision_position_ids(const std::vector<VisionGrid>& grids,
                                                     const VisionPositionOptions& options = {});

}  // namespace ropekit
