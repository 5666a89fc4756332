#include "check_case.hpp"
#if defined(ROPEKIT_HAS_CPU_SIMD)
#include "cpu_simd/simd.hpp"
#include "cpu_simd/thread_pool.hpp"
#endif

namespace ropekit::cases {

std::vector<Backend> cpu_backends() {
  std::vector<Backend> out;
  out.push_back({"scalar", true, [](const detail::RopeParams& p, std::span<const HostRegion>) {
                   detail::apply_cpu_scalar(p);
                 }});
#if defined(ROPEKIT_HAS_CPU_SIMD)
  for (int64_t target : detail::simd_targets()) {
    detail::simd_pin_target(target);
    const std::string name = "simd:" + detail::simd_target_name();
    detail::simd_pin_target(0);
    out.push_back({name, false, [target](const detail::RopeParams& p, std::span<const HostRegion>) {
                     // A case's few bytes would stay on one thread: split them as a large call is.
                     struct Pinned {
                       Pinned(int64_t target, bool split) {
                         detail::simd_pin_target(target);
                         if (split) detail::set_cpu_min_bytes_per_thread(1);
                       }
                       ~Pinned() {
                         detail::set_cpu_min_bytes_per_thread(detail::kCpuMinBytesPerThread);
                         detail::simd_pin_target(0);
                       }
                     } pinned(target, p.num_threads != 1);
                     detail::apply_cpu_simd(p);
                   }});
  }
#endif
  return out;
}

}  // namespace ropekit::cases
