// CUDA backend: checks what only the runtime can tell (device, stream, pointer residency), fetches
// the table's device copy, launches, and records the launch for the copy's stream-ordered free.
// Device-resident positions are checked by the kernel itself (device_state.hpp): no
// synchronisation here once the device and the table have been used once.
//
// Runtime calls per call in steady state: cudaGetDevice, cudaStreamIsCapturing, one
// cudaPointerGetAttributes per distinct data pointer (q, k, outputs, position arrays), the launch,
// cudaGetLastError and (outside a capture) one cudaEventRecord. Cached: the device count, the
// multiprocessor count, the occupancy of each kernel, the stream's device (per thread).
#include <cstdint>
#include <string>

#include "../backend.hpp"
#include "../check.hpp"
#include "cuda_check.hpp"
#include "device_state.hpp"
#include "device_table.hpp"
#include "kernel_args.hpp"
#include "launch.hpp"

namespace ropekit::detail {
namespace cuda {
namespace {

int checked_device(const Device& device) {
  const int count = device_count();
  if (device.index < 0 || device.index >= count)
    fail("q.device", cat("cuda:0 .. cuda:", count - 1, " (", count, " devices present)"), to_string(device));
  return device.index;
}

// A stream of another device would run the kernel on the wrong GPU. The answer for the last
// stream this thread used is kept: a handle is unique while its stream lives (a launch on a stream
// of another device fails anyway, as a CudaError).
void check_stream_device(cudaStream_t stream, int device) {
#if CUDART_VERSION >= 12080
  // The default, legacy and per-thread handles name a stream of the current device (set by the
  // caller's DeviceGuard), whichever device that is.
  if (stream == nullptr || stream == cudaStreamLegacy || stream == cudaStreamPerThread) return;
  thread_local cudaStream_t last_stream = nullptr;
  thread_local int last_device = -1;
  int stream_device = last_device;
  if (stream != last_stream) {
    ROPEKIT_CUDA_CHECK(cudaStreamGetDevice(stream, &stream_device));
    last_stream = stream;
    last_device = stream_device;
  }
  if (stream_device != device)
    fail("options.stream", cat("a stream of cuda:", device, " (the views' device)"), cat("a stream of cuda:", stream_device));
#else
  (void)stream;
  (void)device;
#endif
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

bool is_capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  ROPEKIT_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  return capture != cudaStreamCaptureStatusNone;
}

}  // namespace
}  // namespace cuda

void apply_cuda(const RopeParams& p) {
  using namespace cuda;
  const int device = checked_device(p.device);
  raise_pending_fault(device);  // an earlier call's invalid device-resident position
  DeviceGuard guard(device);
  const auto stream = static_cast<cudaStream_t>(p.stream);
  const bool capturing = is_capturing(stream);
  check_stream_device(stream, device);
  check_operand_memory(p.q, device, "q", "q_out");
  if (p.has_k) check_operand_memory(p.k, device, "k", "k_out");

  KernelArgs a = kernel_args(p);
  if (a.pos.values)
    require_device_memory(a.pos.values, device,
                          a.pos.kind == Positions::Kind::token_ids ? "positions.ids.data" : "positions.offsets.data");
  if (a.pos.cu_seqlens) require_device_memory(a.pos.cu_seqlens, device, "positions.cu_seqlens.data");

  const DeviceState& state = device_state(device, capturing);
  if (a.pos.kind != Positions::Kind::from_offset) {  // device-resident positions: checked by the kernel
    a.fault_claim = state.fault_claim;
    a.fault_record = state.fault_record;
  }
  const DeviceTable* table = nullptr;
  if (p.table != nullptr) {
    // The table's device copy lives as long as the table (positions past its rows are computed).
    table = &device_table(*p.table, state, p.rows_count > 0, capturing);
    set_table(a, p, *table);
  } else if (p.pairs == 0) {
    set_table(a, p, DeviceTable{});  // apply_query_scale: no pairs, so no table
  } else {
    require_device_memory(p.rows, device, "cos_sin_cache.data");
    set_caller_rows(a, p);
  }

  switch (p.dtype) {
    case DType::f32: launch_f32(a, p, state, stream); break;
    case DType::f16: launch_f16(a, p, state, stream); break;
    case DType::bf16: launch_bf16(a, p, state, stream); break;
    case DType::f64: fail("q.dtype", "f32, f16 or bf16", "f64 (runs on the CPU)");  // refused by apply()
    case DType::f8_e4m3:
    case DType::f8_e5m2: fail("q.dtype", "f32, f16 or bf16", to_string(p.dtype));  // refused by apply()
  }
  // A captured launch is not recorded: the caller keeps the table alive as long as the graph.
  if (!capturing && table != nullptr) record_use(*p.table, *table, stream);
}

}  // namespace ropekit::detail
