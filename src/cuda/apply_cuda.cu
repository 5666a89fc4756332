// CUDA backend: checks what only the device can tell (pointer residency, device-resident position
// arrays), fetches the device copy of the table, picks a launch configuration and launches.
#include <algorithm>
#include <cstdint>
#include <string>

#include "../backend.hpp"
#include "../check.hpp"
#include "cuda_check.hpp"
#include "device_table.hpp"
#include "launch_config.hpp"
#include "kernel_args.hpp"
#include "rope_kernel.cuh"

namespace ropekit::detail {
namespace cuda {
namespace {

// ---- Argument checks that need the CUDA runtime -------------------------------------------------

int checked_device(const Device& device) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    fail("q.device", "a usable CUDA device", cat(to_string(device), " (", cudaGetErrorString(err), ")"));
  }
  if (device.index < 0 || device.index >= count)
    fail("q.device", cat("cuda:0 .. cuda:", count - 1, " (", count, " devices present)"), to_string(device));
  return device.index;
}

// The pointer must be device (or managed) memory of `device`: a host pointer handed over as a
// device view would otherwise fault inside the kernel.
void require_device_memory(const void* ptr, int device, const std::string& name) {
  cudaPointerAttributes attr{};
  const cudaError_t err = cudaPointerGetAttributes(&attr, ptr);
  const std::string expected = cat("memory of cuda:", device);
  if (err == cudaErrorInvalidValue) {
    (void)cudaGetLastError();
    fail(name, expected, "a pointer the CUDA runtime does not know (host memory?)");
  }
  ROPEKIT_CUDA_CHECK(err);
  switch (attr.type) {
    case cudaMemoryTypeDevice:
      if (attr.device != device) fail(name, expected, cat("memory of cuda:", attr.device));
      return;
    case cudaMemoryTypeManaged:
      return;
    case cudaMemoryTypeHost:
      fail(name, expected, "pinned host memory");
    default:
      fail(name, expected, "host memory");
  }
}

void check_operand_memory(const Operand& op, int device, const char* in_name, const char* out_name) {
  if (op.heads == 0) return;  // an empty operand (beside a non-empty one) may have null data
  require_device_memory(op.in, device, cat(in_name, ".data"));
  if (op.out != op.in) require_device_memory(op.out, device, cat(out_name, ".data"));
}

// ---- Device-resident positions: validated on the device before anything is written --------------

struct PositionStatus {
  unsigned long long bad_cu;      // smallest failing cu_seqlens index, or ~0
  unsigned long long bad_values;  // smallest failing offsets/ids index, or ~0
  unsigned long long needed;      // largest position + 1 (saturated), meaningful without errors
};

__device__ __forceinline__ unsigned long long saturated_sum(int64_t a, uint64_t b) {
  const uint64_t limit = static_cast<uint64_t>(INT64_MAX);
  const uint64_t ua = static_cast<uint64_t>(a);
  return ua > limit - b ? limit : ua + b;
}

__global__ void check_positions_kernel(const KernelArgs a, int64_t batch, int64_t tokens, PositionStatus* status) {
  const int64_t n = a.kind == PositionKind::offsets ? batch : a.kind == PositionKind::ids ? tokens : a.num_sequences + 1;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const auto index = static_cast<unsigned long long>(i);
    if (a.kind == PositionKind::offsets || a.kind == PositionKind::ids) {
      const int64_t v = read_index(a.values, a.values_i64, i);
      if (v < 0) {
        atomicMin(&status->bad_values, index);
      } else if (a.kind == PositionKind::ids) {
        atomicMax(&status->needed, saturated_sum(v, 1));
      } else if (a.seq > 0) {
        atomicMax(&status->needed, saturated_sum(v, static_cast<uint64_t>(a.seq)));
      }
      continue;
    }
    // packed: cu_seqlens[0] = 0, non-decreasing, cu_seqlens[B] = tokens; offsets >= 0.
    const int64_t cu = read_index(a.cu_seqlens, a.cu_i64, i);
    if (i == 0 && cu != 0) atomicMin(&status->bad_cu, index);
    if (i > 0 && cu < read_index(a.cu_seqlens, a.cu_i64, i - 1)) atomicMin(&status->bad_cu, index);
    if (i == a.num_sequences) {
      if (cu != tokens) atomicMin(&status->bad_cu, index);
      continue;
    }
    const int64_t offset = a.values ? read_index(a.values, a.values_i64, i) : 0;
    if (offset < 0) {
      atomicMin(&status->bad_values, index);
      continue;
    }
    const int64_t next = read_index(a.cu_seqlens, a.cu_i64, i + 1);
    if (next > cu) atomicMax(&status->needed, saturated_sum(offset, static_cast<uint64_t>(next) - static_cast<uint64_t>(cu)));
  }
}

int64_t read_device_index(const void* data, bool i64, int64_t i, cudaStream_t stream) {
  int64_t v64 = 0;
  int32_t v32 = 0;
  void* dst = i64 ? static_cast<void*>(&v64) : static_cast<void*>(&v32);
  const size_t bytes = i64 ? sizeof v64 : sizeof v32;
  ROPEKIT_CUDA_CHECK(cudaMemcpyAsync(dst, static_cast<const char*>(data) + i * static_cast<int64_t>(bytes), bytes,
                                     cudaMemcpyDeviceToHost, stream));
  ROPEKIT_CUDA_CHECK(cudaStreamSynchronize(stream));
  return i64 ? v64 : v32;
}

// Runs the check kernel and waits for its verdict (one stream synchronisation per call with
// device-resident positions: the price of raising an Error before any output is written).
// Returns the largest position + 1.
int64_t check_device_positions(const RopeParams& p, const KernelArgs& a, cudaStream_t stream) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  ROPEKIT_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  if (capture != cudaStreamCaptureStatusNone)
    fail("positions", "from_offset positions while capturing a CUDA graph (device position arrays are validated "
         "with a stream synchronisation)", "device position arrays");
  PositionStatus* status = nullptr;
  ROPEKIT_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&status), sizeof(PositionStatus), stream));
  PositionStatus host{};
  cudaError_t err = cudaMemsetAsync(status, 0xff, 2 * sizeof(unsigned long long), stream);
  if (err == cudaSuccess) err = cudaMemsetAsync(&status->needed, 0, sizeof(unsigned long long), stream);
  const int64_t tokens = p.batch * p.seq;
  const int64_t n = std::max({p.batch, tokens, p.num_sequences + 1});
  const auto blocks = static_cast<unsigned>(std::min<int64_t>(ceil_div(n, 256), 1024));
  if (err == cudaSuccess) {
    check_positions_kernel<<<blocks, 256, 0, stream>>>(a, p.batch, tokens, status);
    err = cudaGetLastError();
  }
  if (err == cudaSuccess) err = cudaMemcpyAsync(&host, status, sizeof host, cudaMemcpyDeviceToHost, stream);
  const cudaError_t freed = cudaFreeAsync(status, stream);
  if (err == cudaSuccess) err = freed;
  if (err == cudaSuccess) err = cudaStreamSynchronize(stream);
  ROPEKIT_CUDA_CHECK(err);

  constexpr unsigned long long kNone = ~0ull;
  if (host.bad_cu != kNone) {
    const auto j = static_cast<int64_t>(host.bad_cu);
    const int64_t value = read_device_index(a.cu_seqlens, a.cu_i64, j, stream);
    if (j == 0) fail("positions.cu_seqlens[0]", "0", value);
    const int64_t previous = read_device_index(a.cu_seqlens, a.cu_i64, j - 1, stream);
    if (value < previous) fail(cat("positions.cu_seqlens[", j, "]"), cat(">= cu_seqlens[", j - 1, "] (", previous, ")"), value);
    fail(cat("positions.cu_seqlens[", j, "]"), cat(tokens, " (the number of tokens in q)"), value);
  }
  if (host.bad_values != kNone) {
    const auto j = static_cast<int64_t>(host.bad_values);
    const int64_t value = read_device_index(a.values, a.values_i64, j, stream);
    fail(cat(a.kind == PositionKind::ids ? "positions.ids[" : "positions.offsets[", j, "]"), ">= 0", value);
  }
  return static_cast<int64_t>(host.needed);
}

// ---- Launch ------------------------------------------------------------------------------------

template <typename T, int P>
void launch(KernelArgs& a, const RopeParams& p, int device, cudaStream_t stream) {
  int multiprocessors = 1;
  int threads_per_multiprocessor = 2048;
  ROPEKIT_CUDA_CHECK(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, device));
  ROPEKIT_CUDA_CHECK(cudaDeviceGetAttribute(&threads_per_multiprocessor, cudaDevAttrMaxThreadsPerMultiProcessor, device));
  const LaunchConfig config =
      configure_launch<P>(a, p, multiprocessors, threads_per_multiprocessor, heads_per_thread_override());
  if (config.items == 0) return;
  rope_kernel<T, P><<<static_cast<unsigned>(config.grid), static_cast<unsigned>(config.block), 0, stream>>>(a);
  ROPEKIT_CUDA_CHECK(cudaGetLastError());
}

template <typename T>
void launch_dtype(KernelArgs& a, const RopeParams& p, int device, cudaStream_t stream) {
  constexpr int kP = kVectorPairs<T>;
  if (vector_ok(p, kP)) return launch<T, kP>(a, p, device, stream);
  launch<T, 1>(a, p, device, stream);
}

}  // namespace
}  // namespace cuda

void apply_cuda(const RopeParams& p) {
  using namespace cuda;
  const int device = checked_device(p.device);
  DeviceGuard guard(device);
  const auto stream = static_cast<cudaStream_t>(p.stream);

#if CUDART_VERSION >= 12080
  if (stream != nullptr) {  // a stream of another device would run the kernel on the wrong GPU
    int stream_device = device;
    ROPEKIT_CUDA_CHECK(cudaStreamGetDevice(stream, &stream_device));
    if (stream_device != device)
      fail("options.stream", cat("a stream of cuda:", device, " (the views' device)"), cat("a stream of cuda:", stream_device));
  }
#endif
  check_operand_memory(p.q, device, "q", "q_out");
  if (p.has_k) check_operand_memory(p.k, device, "k", "k_out");

  KernelArgs a = kernel_args(p);
  if (a.values)
    require_device_memory(a.values, device, a.kind == PositionKind::ids ? "positions.ids.data" : "positions.offsets.data");
  if (a.cu_seqlens) require_device_memory(a.cu_seqlens, device, "positions.cu_seqlens.data");
  if (a.kind != PositionKind::offset) (void)check_device_positions(p, a, stream);

  // The table's device copy lives as long as the table (positions past its rows are computed).
  const DeviceTable& table = device_table(*p.table, p.rows_count > 0, p.stream);
  set_table(a, p, table);

  switch (p.dtype) {
    case DType::f32: return launch_dtype<F32>(a, p, device, stream);
    case DType::f16: return launch_dtype<F16>(a, p, device, stream);
    case DType::bf16: return launch_dtype<BF16>(a, p, device, stream);
    case DType::f64: break;  // refused by apply(): f64 runs on the CPU
  }
  fail("q.dtype", "f32, f16 or bf16", static_cast<int>(p.dtype));
}

}  // namespace ropekit::detail
