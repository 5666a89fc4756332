#pragma once
// Runs one case on one backend and checks every element against the float64 reference
// (reference64.hpp, frequencies from hf_formulas.hpp): rotated elements within the dtype's
// tolerance of their pair's magnitude (NaN never passes), pass-through elements bit-exact, inputs of
// out-of-place calls and bytes outside the views unchanged.
#include <cstddef>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "backend.hpp"
#include "case_table.hpp"

namespace ropekit::cases {

// A host buffer the params point into: q, k, the outputs, the position arrays.
struct HostRegion {
  void* data = nullptr;
  size_t bytes = 0;
};

struct Backend {
  std::string name;
  bool f64 = true;  // runs f64 cases
  // Runs the checked params (host pointers into `regions`) and leaves the results in the regions.
  std::function<void(const detail::RopeParams&, std::span<const HostRegion> regions)> run;
  // Also within one storage ulp of the scalar loop, element by element: for backends that share its
  // arithmetic (the CUDA kernels), where the reference's tolerance would hide a small systematic error.
  bool agrees_with_scalar = false;
  // Instead of `run` (params): the public entry point, which checks the call and picks the backend
  // itself: ropekit::apply_rope with the case's table, or with its spec (a table prepared for the
  // largest position + 1, as the length-dependent schemes need).
  enum class Entry { params, apply_rope_table, apply_rope_spec };
  Entry entry = Entry::params;
};

// apply_rope through the table or the spec (names "apply_rope(table)", "apply_rope(spec)").
Backend public_api(Backend::Entry entry);

struct CaseResult {
  bool ran = false;           // false: the backend skips this dtype
  bool passed = false;
  double worst_error = 0.0;   // largest |got - want| / (tol-scaled) ratio; > 1 fails; NaN fails
  int64_t failures = 0;
  std::string first_failure;  // where and what, for the report
};

// Relative to the norm of the element's rotated pair.
double tolerance(DType dtype);

CaseResult check_case(const Case& c, const Backend& backend);

// Every case of `table` on `backend`: the count run and the failures (each with its case).
struct TableResult {
  int64_t ran = 0, skipped = 0, failed = 0;
  std::vector<std::string> failures;  // describe() and first_failure of each failed case
};
TableResult run_table(const std::vector<Case>& table, const Backend& backend);

// The scalar loop and each Highway target this build has and this CPU runs (names "scalar",
// "simd:<target>").
std::vector<Backend> cpu_backends();

// Memory other than the host's (a device's), as a relocated backend uses it.
struct Memory {
  Device device;
  std::function<void*(size_t bytes)> allocate;
  std::function<void(void*)> release;
  std::function<void(void* to, const void* host, size_t bytes)> upload;
  std::function<void(void* host, const void* from, size_t bytes)> download;
};

// A backend that runs `run` on copies of the checker's regions in `memory`: every pointer of the
// params into a region (q, k, the outputs, the position arrays) is moved to its copy and the views
// to memory.device; every region comes back (inputs too). While `run` runs, the host regions hold NaN,
// so a pointer left on the host cannot pass.
Backend relocated(std::string name, bool f64, Memory memory, std::function<void(const detail::RopeParams&)> run);

// The CUDA kernels on each CUDA device present ("cuda:<index>"); empty without the CUDA backend or
// a device.
std::vector<Backend> cuda_backends();

}  // namespace ropekit::cases
