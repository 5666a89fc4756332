// rotary_embedding on a CUDA device: the same answer as on the CPU (same cache, positions and
// layout), device positions outside the cache reported by the next call with the token untouched.
#include <optional>
#include <random>

#include "cuda_test_util.hpp"
#include "ropekit/cuda.hpp"
#include "ropekit/engine.hpp"

namespace ropekit_cuda_test {
namespace {

std::vector<unsigned char> random_values(DType t, int64_t n, std::mt19937_64& rng) {
  std::vector<unsigned char> v(static_cast<size_t>(n) * elem_size(t));
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  for (int64_t i = 0; i < n; ++i) {
    const float x = u(rng);
    if (t == DType::f32) {
      std::memcpy(v.data() + 4 * i, &x, 4);
    } else {
      const uint16_t h = t == DType::f16 ? detail::float_to_half(x) : detail::float_to_bf16(x);
      std::memcpy(v.data() + 2 * i, &h, 2);
    }
  }
  return v;
}

TEST(CudaEngine, RotaryEmbeddingMatchesTheCpu) {
  ROPEKIT_REQUIRE_GPU();
  std::mt19937_64 rng(std::random_device{}());
  for (DType t : {DType::f32, DType::f16, DType::bf16})
    for (bool neox : {true, false})
      for (int64_t offset : {0, 64})
        for (bool inverse : {false, true}) {
          SCOPED_TRACE(to_string(t) + (neox ? " neox" : " gptj") + " offset=" + std::to_string(offset) +
                       (inverse ? " inverse" : ""));
          const int64_t T = 37, Hq = 8, Hk = 2, D = 128, R = D - offset, max_pos = 4096;
          SpecParams sp;
          sp.head_dim = R;
          const std::vector<float> cache = cos_sin_cache(RopeSpec(sp), max_pos);
          std::vector<int64_t> pos(T);
          std::uniform_int_distribution<int64_t> any(0, max_pos - 1);
          for (auto& p : pos) p = any(rng);
          std::vector<unsigned char> q = random_values(t, T * Hq * D, rng), k = random_values(t, T * Hk * D, rng);
          DeviceBuffer dq(q.size()), dk(k.size()), dcache(cache.size() * 4), dpos(pos.size() * 8);
          dq.upload(q.data(), q.size());
          dk.upload(k.data(), k.size());
          dcache.upload(cache.data(), cache.size() * 4);
          dpos.upload(pos.data(), pos.size() * 8);
          rotary_embedding(IndexView(pos.data(), T), TensorView::contiguous(q.data(), t, {T, Hq * D}),
                           TensorView::contiguous(k.data(), t, {T, Hk * D}), D,
                           {cache.data(), DType::f32, Device::cpu(), max_pos, R}, neox, offset, inverse);
          rotary_embedding(IndexView(static_cast<const int64_t*>(dpos.get()), T, Device::cuda(0)),
                           TensorView::contiguous(dq.get(), t, {T, Hq * D}, Device::cuda(0)),
                           TensorView::contiguous(dk.get(), t, {T, Hk * D}, Device::cuda(0)), D,
                           {dcache.get(), DType::f32, Device::cuda(0), max_pos, R}, neox, offset, inverse);
          ROPEKIT_CUDA_OK(cudaDeviceSynchronize());
          cuda_check_errors();
          std::vector<unsigned char> gq(q.size()), gk(k.size());
          dq.download(gq.data(), gq.size());
          dk.download(gk.data(), gk.size());
          const double eps = t == DType::f32 ? 1e-6 : t == DType::f16 ? 1e-3 : 8e-3;
          for (int64_t i = 0; i < T * Hq * D; ++i)
            ASSERT_NEAR(get(gq, t, i), get(q, t, i), eps * (1 + std::fabs(get(q, t, i)))) << "q[" << i << "]";
          for (int64_t i = 0; i < T * Hk * D; ++i)
            ASSERT_NEAR(get(gk, t, i), get(k, t, i), eps * (1 + std::fabs(get(k, t, i)))) << "k[" << i << "]";
        }
}

TEST(CudaEngine, DevicePositionPastTheCacheIsReported) {
  ROPEKIT_REQUIRE_GPU();
  const int64_t T = 4, D = 64, max_pos = 16;
  SpecParams sp;
  sp.head_dim = D;
  const std::vector<float> cache = cos_sin_cache(RopeSpec(sp), max_pos);
  const std::vector<int64_t> pos{1, 2, 16, 3};
  std::vector<float> q(T * D, 0.5f);
  DeviceBuffer dq(q.size() * 4), dcache(cache.size() * 4), dpos(pos.size() * 8);
  dq.upload(q.data(), q.size() * 4);
  dcache.upload(cache.data(), cache.size() * 4);
  dpos.upload(pos.data(), pos.size() * 8);
  rotary_embedding(IndexView(static_cast<const int64_t*>(dpos.get()), T, Device::cuda(0)),
                   TensorView::contiguous(dq.get(), DType::f32, {T, D}, Device::cuda(0)), std::nullopt, D,
                   {dcache.get(), DType::f32, Device::cuda(0), max_pos, D}, true);
  ROPEKIT_CUDA_OK(cudaDeviceSynchronize());
  try {
    cuda_check_errors();
    ADD_FAILURE() << "no error for positions[2] = 16 with 16 cache rows";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("positions.ids[2]: expected in [0, 15], got 16"), std::string::npos) << e.what();
  }
  std::vector<float> got(q.size());
  dq.download(got.data(), got.size() * 4);
  for (int64_t d = 0; d < D; ++d) EXPECT_EQ(got[2 * D + d], 0.5f) << d;  // the token without a row is untouched
  EXPECT_NE(got[D + 1], 0.5f);                                              // the others are rotated
}

}  // namespace
}  // namespace ropekit_cuda_test
