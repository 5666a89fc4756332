// The CUDA kernels on the device: the shared case table (src/cases) against the float64 reference
// and the scalar loop, then what the table leaves to its draws: every access width (row padding)
// with rows and with positions past them, today's head counts with forced head groups, packed
// sequences, a long prefill, single tokens of every common head size, and apply_query_scale without
// pairs. Every test skips without a GPU.
#include <cstdint>
#include <vector>

#include "case_test_util.hpp"
#include "cuda/launch_config.hpp"
#include "cuda_test_util.hpp"
#include "ropekit/cuda.hpp"

namespace ropekit_cuda_test {
namespace {

namespace cases = ropekit::cases;

const QueryScale kQueryScale{1.25, 0.3, 3, 1};  // t steps every 3 positions
const Direction kDirections[] = {Direction::forward, Direction::backward, Direction::inverse};

TEST(CudaApply, EveryCaseOfTheTableOnEveryDevice) {
  ROPEKIT_REQUIRE_GPU();
  const uint64_t seed = cases::test_seed();
  SCOPED_TRACE(cases::replay_note(seed));
  const auto backends = cases::cuda_backends();
  ASSERT_EQ(static_cast<int>(backends.size()), cuda_device_count());
  const auto table = cases::test_table(seed);
  for (const cases::Backend& backend : backends) cases::expect_table_passes(table, backend);
}

// cases::expect_case_passes on cuda:0 with `heads_per_thread` forced (0: the automatic split).
template <class Adjust>
void expect_passes(cases::Case c, uint64_t seed, Adjust adjust, int heads_per_thread = 0) {
  SCOPED_TRACE("heads_per_thread=" + std::to_string(heads_per_thread));
  ropekit::detail::cuda::set_heads_per_thread_override(heads_per_thread);
  cases::expect_case_passes(c, seed, adjust, {cases::cuda_backends().front()});
  ropekit::detail::cuda::set_heads_per_thread_override(0);
}

// Row padding picks the access width (16, 8, 4, 2 bytes, one element): each, both styles, rows
// covering every position and rows for only some (the others computed in the kernel).
TEST(CudaApply, EveryAccessWidth) {
  ROPEKIT_REQUIRE_GPU();
  const uint64_t seed = cases::test_seed();
  SCOPED_TRACE(cases::replay_note(seed));
  int index = 0;
  for (DType t : {DType::f32, DType::f16, DType::bf16})
    for (Style st : {Style::half, Style::interleaved})
      for (int64_t pad : {0, 1, 2, 3, 4, 8})
        for (cases::CosSin cs : {cases::CosSin::rows, cases::CosSin::past_rows}) {
          // Position kind, in/out of place, xPos and direction vary independently across the widths.
          cases::Case c{.dtype = t, .style = st, .cos_sin = cs};
          c.positions = static_cast<cases::PositionMode>(index % 4);
          c.in_place = index / 4 % 2 == 0;
          c.xpos = index / 8 % 2 == 1;
          c.direction = kDirections[index % 3];
          c.row_padding = pad;
          expect_passes(c, seed + static_cast<uint64_t>(index++), [](cases::Case& x) { cases::set_head_dim(x, 128); });
        }
}

// Llama, Mistral and Qwen head counts with forced head groups (the multi-head loop and ragged last
// groups), and q alone.
TEST(CudaApply, GqaHeadCountsAndForcedHeadGroups) {
  ROPEKIT_REQUIRE_GPU();
  uint64_t seed = cases::test_seed();
  SCOPED_TRACE(cases::replay_note(seed));
  const int64_t heads[][2] = {{32, 8}, {8, 1}, {3, 5}, {1, 1}, {12, 4}, {7, 0}};
  for (const auto& hk : heads)
    for (int hpt : {0, 1, 3, 8})
      expect_passes(cases::Case{.in_place = hpt % 2 == 0}, seed++,
                    [&](cases::Case& x) {
                      x.q_heads = hk[0];
                      x.k_heads = hk[1];
                      cases::set_head_dim(x, 128);
                    },
                    hpt);
}

// Packed sequences (cu_seqlens through shared memory) of 301 tokens, with and without offsets, in
// and out of place: the subset compute-sanitizer's racecheck runs (scripts/gpu_run.sh).
TEST(CudaApply, PackedSequences) {
  ROPEKIT_REQUIRE_GPU();
  const uint64_t seed = cases::test_seed();
  SCOPED_TRACE(cases::replay_note(seed));
  uint64_t n = 0;
  for (DType t : {DType::f32, DType::f16, DType::bf16})
    for (cases::PositionMode pos : {cases::PositionMode::packed, cases::PositionMode::packed_offsets})
      for (bool in_place : {true, false})
        expect_passes(cases::Case{.dtype = t, .layout = cases::Layout::thd, .out_layout = cases::Layout::thd, .positions = pos,
                                  .in_place = in_place},
                      seed + n++, [](cases::Case& x) { x.seq = 301; });
}

// A 4097-token prefill and single tokens of every common head size, each dtype.
TEST(CudaApply, LongPrefillAndSingleTokens) {
  ROPEKIT_REQUIRE_GPU();
  uint64_t seed = cases::test_seed();
  SCOPED_TRACE(cases::replay_note(seed));
  for (DType t : {DType::f32, DType::f16, DType::bf16}) {
    expect_passes(cases::Case{.dtype = t, .in_place = t != DType::f16}, seed++, [](cases::Case& x) {
      x.batch = 1;
      x.seq = 4097;
      x.q_heads = 2;
      x.k_heads = 1;
      cases::set_head_dim(x, 128);
    });
    for (int64_t d : {64, 80, 128, 256})
      expect_passes(cases::Case{.dtype = t, .style = d == 80 ? Style::interleaved : Style::half}, seed++,
                    [d](cases::Case& x) {
                      x.batch = x.seq = 1;
                      cases::set_head_dim(x, d);
                    });
  }
}

// apply_query_scale (a NoPE layer: no pairs) on the device equals the CPU, f32 with device ids.
TEST(CudaApply, QueryScaleWithoutRotation) {
  ROPEKIT_REQUIRE_GPU();
  const int64_t T = 37, H = 3, D = 72;
  std::mt19937_64 rng(cases::test_seed());
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::vector<float> q(static_cast<size_t>(T * H * D));
  for (float& v : q) v = u(rng);
  std::vector<int64_t> ids(static_cast<size_t>(T));
  for (int64_t& id : ids) id = static_cast<int64_t>(rng() % 50);
  for (Direction d : kDirections) {
    std::vector<float> cpu = q;
    ApplyOptions opts;
    opts.direction = d;
    apply_query_scale(TensorView::thd(cpu.data(), DType::f32, T, H, D), Positions::token_ids(IndexView(ids.data(), T)),
                      kQueryScale, opts);
    DeviceBuffer dq(q.size() * sizeof(float));
    dq.upload(q.data(), q.size() * sizeof(float));
    DeviceBuffer dids(ids.size() * sizeof(int64_t));
    dids.upload(ids.data(), ids.size() * sizeof(int64_t));
    apply_query_scale(TensorView::thd(dq.get(), DType::f32, T, H, D, Device::cuda(0)),
                      Positions::token_ids(IndexView(static_cast<const int64_t*>(dids.get()), T, Device::cuda(0))),
                      kQueryScale, opts);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<float> gpu(q.size());
    dq.download(gpu.data(), gpu.size() * sizeof(float));
    // One fp32 rounding each; t from the host's and the device's log1p (equal, or one ulp apart).
    int failures = 0;
    for (size_t i = 0; i < gpu.size(); ++i)
      if (!(std::fabs(gpu[i] - cpu[i]) <= std::ldexp(std::fabs(cpu[i]), -22)) && ++failures <= 3)
        ADD_FAILURE() << "direction " << static_cast<int>(d) << " element " << i << ": gpu " << gpu[i] << ", cpu " << cpu[i];
  }
}

}  // namespace
}  // namespace ropekit_cuda_test
