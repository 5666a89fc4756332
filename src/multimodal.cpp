// M-RoPE positions of a multimodal prompt, as transformers 5.x's get_rope_index builds them.
#include "ropekit/multimodal.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "check.hpp"

namespace ropekit {
namespace {

using detail::cat;
using detail::fail;

void check_host_index(const IndexView& v, const char* name, int64_t size) {
  if (v.device.type != DeviceType::cpu) fail(cat(name, ".device"), "cpu", to_string(v.device));
  if (v.type != IndexType::i32 && v.type != IndexType::i64) fail(cat(name, ".type"), "i32 or i64", static_cast<int>(v.type));
  if (v.size != size) fail(cat(name, ".size"), cat(size, " (batch x seq)"), v.size);
  if (size > 0 && v.data == nullptr) fail(cat(name, ".data"), "a non-null pointer", "nullptr");
}

// The grids the runs of one modality take, in order (split_video_frames: one per frame).
struct GridQueue {
  const char* name;  // image_grid_thw / video_grid_thw
  std::vector<VisionGrid> grids;
  std::vector<int64_t> source;  // the caller's index of each grid
  size_t next = 0;
};

GridQueue queue_of(const char* name, const std::vector<VisionGrid>& grids, int64_t merge, bool split) {
  GridQueue q{name, {}, {}, 0};
  for (size_t i = 0; i < grids.size(); ++i) {
    const VisionGrid& g = grids[i];
    if (g.t <= 0 || g.h <= 0 || g.w <= 0)
      fail(cat(name, "[", i, "]"), "t, h and w > 0", cat("(", g.t, ", ", g.h, ", ", g.w, ")"));
    if (g.h % merge != 0 || g.w % merge != 0)
      fail(cat(name, "[", i, "]"), cat("h and w divisible by spatial_merge_size (", merge, ")"),
           cat("(", g.t, ", ", g.h, ", ", g.w, ")"));
    const int64_t copies = split ? g.t : 1;
    for (int64_t c = 0; c < copies; ++c) {
      q.grids.push_back(split ? VisionGrid{1, g.h, g.w} : g);
      q.source.push_back(static_cast<int64_t>(i));
    }
  }
  return q;
}

}  // namespace

MRopeIndex mrope_index(IndexView token_types, int64_t batch, int64_t seq, const std::vector<VisionGrid>& image_grids,
                       const std::vector<VisionGrid>& video_grids, const MRopeIndexOptions& options,
                       IndexView attention_mask, const std::vector<double>& seconds_per_grid) {
  if (batch < 0) fail("batch", ">= 0", batch);
  if (seq < 0) fail("seq", ">= 0", seq);
  int64_t tokens = 0;
  if (__builtin_mul_overflow(batch, seq, &tokens) || tokens > std::numeric_limits<int64_t>::max() / 3)
    fail("batch * seq", "3 * batch * seq that fits in int64", cat(batch, " x ", seq));
  check_host_index(token_types, "token_types", tokens);
  const bool masked = !attention_mask.empty() || attention_mask.data != nullptr;
  if (masked) check_host_index(attention_mask, "attention_mask", tokens);
  const int64_t merge = options.spatial_merge_size;
  if (merge <= 0) fail("options.spatial_merge_size", "an integer > 0", merge);
  detail::require_finite_at_least(options.tokens_per_second, 0.0, "options.tokens_per_second");
  if (!seconds_per_grid.empty() && seconds_per_grid.size() != video_grids.size())
    fail("seconds_per_grid.size", cat(video_grids.size(), " (one per video grid)"), seconds_per_grid.size());
  for (size_t i = 0; i < seconds_per_grid.size(); ++i)
    detail::require_finite_at_least(seconds_per_grid[i], 0.0, cat("seconds_per_grid[", i, "]"));
  GridQueue queues[2] = {queue_of("image_grid_thw", image_grids, merge, false),
                         queue_of("video_grid_thw", video_grids, merge, options.split_video_frames)};

  MRopeIndex out;
  out.batch = batch;
  out.seq = seq;
  out.positions.assign(static_cast<size_t>(3 * tokens), 0);
  out.deltas.assign(static_cast<size_t>(batch), 0);
  auto at = [&](int axis, int64_t b, int64_t s) -> int64_t& {
    return out.positions[static_cast<size_t>(axis * tokens + b * seq + s)];
  };
  std::vector<int64_t> kept;  // the unmasked tokens of a row, in order
  for (int64_t b = 0; b < batch; ++b) {
    kept.clear();
    for (int64_t s = 0; s < seq; ++s) {
      const int64_t i = b * seq + s;
      const int64_t type = token_types[i];
      if (type < 0 || type > 2) fail(cat("token_types[", i, "]"), "0 (text), 1 (image) or 2 (video)", type);
      if (masked) {
        const int64_t m = attention_mask[i];
        if (m != 0 && m != 1) fail(cat("attention_mask[", i, "]"), "0 or 1", m);
        if (m == 0) continue;
      }
      kept.push_back(s);
    }
    int64_t current = 0;
    int64_t largest = -1;
    for (size_t run = 0; run < kept.size();) {
      const int64_t type = token_types[b * seq + kept[run]];
      size_t end = run;
      while (end < kept.size() && token_types[b * seq + kept[end]] == type) ++end;
      const auto length = static_cast<int64_t>(end - run);
      if (type == 0) {
        for (int64_t j = 0; j < length; ++j)
          for (int axis = 0; axis < 3; ++axis) at(axis, b, kept[run + static_cast<size_t>(j)]) = current + j;
        largest = std::max(largest, current + length - 1);
        current += length;
      } else {
        GridQueue& q = queues[type - 1];
        if (q.next >= q.grids.size())
          fail(q.name, cat("a grid for the ", type == 1 ? "image" : "video", " run at token_types[", b * seq + kept[run],
                           "] (", q.grids.size(), q.grids.size() == 1 ? " grid, all" : " grids, all", " taken)"),
               cat(q.next, " grids"));
        const VisionGrid g = q.grids[q.next];
        const int64_t source = q.source[q.next++];
        const int64_t rows = g.h / merge;
        const int64_t cols = g.w / merge;
        if (length != g.t * rows * cols)
          fail(cat(q.name, "[", source, "]"),
               cat("a grid of as many merged patches as its run of ", length, " tokens at token_types[",
                   b * seq + kept[run], "]"),
               cat("(", g.t, ", ", g.h, ", ", g.w, "): ", g.t * rows * cols, " tokens"));
        // Qwen2.5-VL: time = (frame * tokens_per_second * seconds).long() in float32, as torch.
        const bool spaced = type == 2 && options.tokens_per_second > 0.0;
        const float interval =
            spaced ? static_cast<float>(options.tokens_per_second) *
                         static_cast<float>(seconds_per_grid.empty() ? 1.0 : seconds_per_grid[static_cast<size_t>(source)])
                   : 1.0f;
        int64_t j = 0;
        for (int64_t f = 0; f < g.t; ++f) {
          const int64_t time = current + (spaced ? static_cast<int64_t>(static_cast<float>(f) * interval) : f);
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < cols; ++c, ++j) {
              const int64_t s = kept[run + static_cast<size_t>(j)];
              at(0, b, s) = time;
              at(1, b, s) = current + r;
              at(2, b, s) = current + c;
              largest = std::max({largest, time, current + r, current + c});
            }
        }
        current += std::max(rows, cols);
      }
      run = end;
    }
    out.deltas[static_cast<size_t>(b)] = largest + 1 - static_cast<int64_t>(kept.size());
  }
  for (const GridQueue& q : queues)
    if (q.next != q.grids.size())
      fail(q.name, cat("every grid taken by a run of tokens (", q.next, " taken)"), cat(q.grids.size(), " grids"));
  return out;
}

std::vector<int64_t> vision_position_ids(const std::vector<VisionGrid>& grids, const VisionPositionOptions& options) {
  const int64_t m = options.spatial_merge_size;
  if (m <= 0) fail("options.spatial_merge_size", "an integer > 0", m);
  if (options.start < 0) fail("options.start", ">= 0", options.start);
  int64_t tokens = 0;
  for (size_t i = 0; i < grids.size(); ++i) {
    const VisionGrid& g = grids[i];
    const auto shown = cat("(", g.t, ", ", g.h, ", ", g.w, ")");
    if (g.t <= 0 || g.h <= 0 || g.w <= 0) fail(cat("grids[", i, "]"), "t, h and w > 0", shown);
    if (g.h % m != 0 || g.w % m != 0) fail(cat("grids[", i, "]"), cat("h and w divisible by spatial_merge_size (", m, ")"), shown);
    int64_t n = 0;
    if (__builtin_mul_overflow(g.h, g.w, &n) || __builtin_mul_overflow(n, g.t, &n) ||
        __builtin_add_overflow(tokens, n + (options.cls_token ? 1 : 0), &tokens) ||
        tokens > std::numeric_limits<int64_t>::max() / 2 - options.start)
      fail(cat("grids[", i, "]"), "patch counts whose total fits in int64", shown);
  }
  std::vector<int64_t> out(static_cast<size_t>(2 * tokens));
  int64_t n = 0;
  auto put = [&](int64_t first, int64_t second) {
    out[static_cast<size_t>(n)] = first;
    out[static_cast<size_t>(tokens + n)] = second;
    ++n;
  };
  for (const VisionGrid& g : grids) {
    for (int64_t f = 0; f < g.t; ++f)
      for (int64_t br = 0; br < g.h / m; ++br)
        for (int64_t bc = 0; bc < g.w / m; ++bc)
          for (int64_t r = br * m; r < (br + 1) * m; ++r)
            for (int64_t c = bc * m; c < (bc + 1) * m; ++c) {
              const int64_t row = r + options.start;
              const int64_t col = c + options.start;
              options.columns_first ? put(col, row) : put(row, col);
            }
    if (options.cls_token) put(0, 0);
  }
  return out;
}

}  // namespace ropekit
