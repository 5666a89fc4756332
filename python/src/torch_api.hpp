#pragma once
// What ropekit._C hands ropekit/_torch_ops.so (the native torch operators) through the capsule
// ropekit._C._torch_api: the kernels of _C's one copy of libropekit (one thread pool, one CUDA
// state, one table registry) instead of a second static copy linked into the operators. Both
// sides are built together from this header; version and size catch a stale _torch_ops.so.
#include <cstdint>
#include <optional>
#include <string>

#include "ropekit/apply.hpp"
#include "ropekit/engine.hpp"
#include "ropekit/tensor_view.hpp"

namespace ropekit::torch_api {

inline constexpr const char* kCapsule = "ropekit._C._torch_api";
inline constexpr uint32_t kVersion = 2;  // 2: EngineOptions::mrope

// Which Python exception an error becomes (the torch side throws the matching c10 error).
enum class Status : int { ok = 0, value_error = 1, runtime_error = 2 };

struct Api {
  uint32_t version;
  uint32_t size;  // sizeof(Api)
  // Rotate with the table, spec or dynamic table registered as `handle` (_C._torch_register).
  // host_positions: the positions on the host when `positions` are device arrays and the handle
  // needs_host_positions (a dynamic table picks its frequencies from the largest position).
  Status (*apply)(int64_t handle, const RopeTensors& tensors, const Positions& positions,
                  const Positions* host_positions, const ApplyOptions& options, std::string* message);
  bool (*needs_host_positions)(int64_t handle);
  // An autograd node holds its forward's handle: the entry outlives the Python object it was made
  // for until the last holder releases it (eager backward uses exactly the forward's table).
  void (*acquire)(int64_t handle);
  void (*release)(int64_t handle);
  Status (*rotary_embedding)(const IndexView& positions, const TensorView& query, const std::optional<TensorView>& key,
                             int64_t head_size, const CosSinCacheView& cache, bool is_neox, int64_t rope_dim_offset,
                             bool inverse, const EngineOptions& options, std::string* message);
};

}  // namespace ropekit::torch_api
