// Bad input on the CUDA path raises ropekit::Error before any output is written: host or pinned
// pointers passed as device views, mismatched devices. Invalid device-resident positions are
// reported by the kernel (cuda_check_errors, or the next call). Also: each table's own device copy.
#include <cstring>
#include <vector>

#include "ropekit/cuda.hpp"

#include "cuda_test_util.hpp"

namespace ropekit_cuda_test {
namespace {

RopeSpec small_spec() {
  SpecParams p;
  p.head_dim = 64;
  return RopeSpec(p);
}

// A device q (B=2, S=5, H=3, D=64, f32) filled with random values, and its host copy.
struct DeviceQ {
  HostTensor host{DType::f32, Layout::bshd, 2, 5, 3, 64};
  DeviceBuffer dev{host.bytes.size()};
  explicit DeviceQ(uint64_t seed) {
    std::mt19937_64 rng(seed);
    host.fill_random(rng);
    dev.upload(host.bytes.data(), host.bytes.size());
  }
  TensorView view() const { return host.view(dev.get(), Device::cuda(0)); }
  std::vector<unsigned char> now() const {
    std::vector<unsigned char> b(host.bytes.size());
    dev.download(b.data(), b.size());
    return b;
  }
};

template <typename F>
void expect_error_mentioning(F&& call, const std::string& fragment) {
  try {
    call();
    ADD_FAILURE() << "expected ropekit::Error mentioning '" << fragment << "'";
  } catch (const ropekit::Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(CudaErrors, HostPointerAsDeviceView) {
  ROPEKIT_REQUIRE_GPU();
  const RopeTable table(small_spec(), 16);
  HostTensor q(DType::f32, Layout::bshd, 2, 5, 3, 64);
  std::mt19937_64 rng(7);
  q.fill_random(rng);
  const auto before = q.bytes;
  RopeTensors t;
  t.q = q.view(q.bytes.data(), Device::cuda(0));  // host memory claimed to be on cuda:0
  expect_error_mentioning([&] { apply_rope(t, Positions::from_offset(0), table); }, "q.data");
  EXPECT_EQ(q.bytes, before);

  // A device q with a host k_out.
  DeviceQ dq(11);
  HostTensor k(DType::f32, Layout::bshd, 2, 5, 1, 64);
  DeviceBuffer dk(k.bytes.size());
  RopeTensors t2;
  t2.q = dq.view();
  t2.k = k.view(dk.get(), Device::cuda(0));
  t2.k_out = k.view(k.bytes.data(), Device::cuda(0));
  expect_error_mentioning([&] { apply_rope(t2, Positions::from_offset(0), table); }, "k_out.data");
  EXPECT_EQ(dq.now(), dq.host.bytes);
}

TEST(CudaErrors, PinnedHostPointerAndHostPositions) {
  ROPEKIT_REQUIRE_GPU();
  const RopeTable table(small_spec(), 64);
  DeviceQ dq(3);
  void* pinned = nullptr;
  ROPEKIT_CUDA_OK(cudaMallocHost(&pinned, dq.host.bytes.size()));
  RopeTensors t;
  t.q = dq.view();
  t.q_out = dq.host.view(pinned, Device::cuda(0));
  expect_error_mentioning([&] { apply_rope(t, Positions::from_offset(0), table); }, "q_out.data");
  (void)cudaFreeHost(pinned);

  // Host ids labelled as device memory.
  std::vector<int64_t> ids(10, 1);
  RopeTensors t2;
  t2.q = dq.view();
  expect_error_mentioning(
      [&] { apply_rope(t2, Positions::token_ids(IndexView(ids.data(), 10, Device::cuda(0))), table); },
      "positions.ids");
  EXPECT_EQ(dq.now(), dq.host.bytes);
}

TEST(CudaErrors, MismatchedDevices) {
  ROPEKIT_REQUIRE_GPU();
  const RopeTable table(small_spec(), 16);
  DeviceQ dq(5);
  // Views that name a device that does not exist.
  RopeTensors t;
  t.q = dq.view();
  t.q.device = Device::cuda(cuda_device_count() + 3);
  expect_error_mentioning([&] { apply_rope(t, Positions::from_offset(0), table); }, "q.device");
  if (cuda_device_count() < 2) GTEST_SKIP() << "one CUDA device: cross-device checks need two";
  // Memory of cuda:0 labelled cuda:1.
  RopeTensors t2;
  t2.q = dq.view();
  t2.q.device = Device::cuda(1);
  expect_error_mentioning([&] { apply_rope(t2, Positions::from_offset(0), table); }, "q.data");
  EXPECT_EQ(dq.now(), dq.host.bytes);
  // A stream of cuda:1 for views on cuda:0.
  int previous = 0;
  ROPEKIT_CUDA_OK(cudaGetDevice(&previous));
  ROPEKIT_CUDA_OK(cudaSetDevice(1));
  cudaStream_t other = nullptr;
  ROPEKIT_CUDA_OK(cudaStreamCreateWithFlags(&other, cudaStreamNonBlocking));
  ROPEKIT_CUDA_OK(cudaSetDevice(previous));
  RopeTensors t3;
  t3.q = dq.view();
  ApplyOptions o;
  o.stream = other;
  expect_error_mentioning([&] { apply_rope(t3, Positions::from_offset(0), table, o); }, "options.stream");
  EXPECT_EQ(dq.now(), dq.host.bytes);
  (void)cudaStreamDestroy(other);
}

// Device-resident positions are checked by the kernel: the call returns, tokens without a valid
// position are left unwritten, and cuda_check_errors (or the next call) raises the Error.
TEST(CudaErrors, InvalidDevicePositionsAreReportedAndSkipped) {
  ROPEKIT_REQUIRE_GPU();
  const RopeTable table(small_spec(), 32);
  const Device dev = Device::cuda(0);
  auto upload64 = [](const std::vector<int64_t>& v) {
    DeviceBuffer b(v.size() * 8);
    b.upload(v.data(), v.size() * 8);
    return b;
  };
  auto upload32 = [](const std::vector<int32_t>& v) {
    DeviceBuffer b(v.size() * 4);
    b.upload(v.data(), v.size() * 4);
    return b;
  };
  // The rows of token t of a (2, 5, 3, 64) f32 q: t * 3 * 64 floats from the start.
  auto token_unchanged = [](const DeviceQ& dq, const std::vector<unsigned char>& now, int64_t t) {
    const size_t bytes = 3 * 64 * 4;
    return std::memcmp(now.data() + t * bytes, dq.host.bytes.data() + t * bytes, bytes) == 0;
  };
  {  // a negative id: token 7 keeps its values, the others are rotated
    DeviceQ dq(9);
    RopeTensors t;
    t.q = dq.view();
    std::vector<int32_t> ids(10, 2);
    ids[7] = -4;
    const DeviceBuffer d = upload32(ids);
    apply_rope(t, Positions::token_ids(IndexView(static_cast<const int32_t*>(d.get()), 10, dev)), table);
    expect_error_mentioning([&] { cuda_check_errors(nullptr); }, "positions.ids[7]");
    cuda_check_errors(nullptr);  // reported once
    const auto now = dq.now();
    EXPECT_TRUE(token_unchanged(dq, now, 7));
    EXPECT_FALSE(token_unchanged(dq, now, 6));
  }
  {  // an id past the table is valid: computed in the kernel
    DeviceQ dq(10);
    RopeTensors t;
    t.q = dq.view();
    std::vector<int64_t> ids(10, 2);
    ids[3] = 32;
    const DeviceBuffer d = upload64(ids);
    apply_rope(t, Positions::token_ids(IndexView(static_cast<const int64_t*>(d.get()), 10, dev)), table);
    cuda_check_errors(nullptr);
    EXPECT_FALSE(token_unchanged(dq, dq.now(), 3));
  }
  {  // a negative per-sequence offset: the whole second sequence is skipped
    DeviceQ dq(11);
    RopeTensors t;
    t.q = dq.view();
    const DeviceBuffer bad = upload64({0, -1});
    apply_rope(t, Positions::per_sequence(IndexView(static_cast<const int64_t*>(bad.get()), 2, dev)), table);
    expect_error_mentioning([&] { cuda_check_errors(nullptr); }, "positions.offsets[1]");
    const auto now = dq.now();
    for (int64_t tok = 5; tok < 10; ++tok) EXPECT_TRUE(token_unchanged(dq, now, tok)) << tok;
    EXPECT_FALSE(token_unchanged(dq, now, 0));
  }
  // Packed (rank 3, 10 tokens): bad cu_seqlens in each way, reported by index.
  auto packed = [&](const std::vector<int64_t>& cu, const std::string& fragment) {
    DeviceQ dq(12);
    TensorView thd = dq.view();
    thd.rank = 3;
    thd.shape = {10, 3, 64, 0};
    thd.strides = {3 * 64, 64, 1, 0};
    RopeTensors tp;
    tp.q = thd;
    const DeviceBuffer d = upload64(cu);
    apply_rope(tp, Positions::packed(IndexView(static_cast<const int64_t*>(d.get()), static_cast<int64_t>(cu.size()), dev)), table);
    expect_error_mentioning([&] { cuda_check_errors(nullptr); }, fragment);
  };
  packed({1, 4, 10}, "positions.cu_seqlens[0]");
  packed({0, 6, 4, 10}, "positions.cu_seqlens[2]");
  packed({0, 4, 9}, "positions.cu_seqlens[2]");
  {
    DeviceQ dq(13);
    TensorView thd = dq.view();
    thd.rank = 3;
    thd.shape = {10, 3, 64, 0};
    thd.strides = {3 * 64, 64, 1, 0};
    RopeTensors tp;
    tp.q = thd;
    const DeviceBuffer cu = upload64({0, 4, 10});
    const DeviceBuffer off = upload64({0, -2});
    apply_rope(tp, Positions::packed(IndexView(static_cast<const int64_t*>(cu.get()), 3, dev),
                                     IndexView(static_cast<const int64_t*>(off.get()), 2, dev)),
               table);
    expect_error_mentioning([&] { cuda_check_errors(nullptr); }, "positions.offsets[1]");
    const auto now = dq.now();
    for (int64_t tok = 4; tok < 10; ++tok) EXPECT_TRUE(token_unchanged(dq, now, tok)) << tok;
  }
}

// Without an explicit check, the next call on the device reports the fault (and does nothing else).
TEST(CudaErrors, NextCallReportsAnEarlierFault) {
  ROPEKIT_REQUIRE_GPU();
  const RopeTable table(small_spec(), 32);
  DeviceQ dq(14);
  RopeTensors t;
  t.q = dq.view();
  std::vector<int64_t> ids(10, 1);
  ids[2] = -9;
  DeviceBuffer d(ids.size() * 8);
  d.upload(ids.data(), ids.size() * 8);
  apply_rope(t, Positions::token_ids(IndexView(static_cast<const int64_t*>(d.get()), 10, Device::cuda(0))), table);
  ROPEKIT_CUDA_OK(cudaDeviceSynchronize());
  const auto after_bad = dq.now();
  expect_error_mentioning([&] { apply_rope(t, Positions::from_offset(0), table); }, "positions.ids[2]");
  EXPECT_EQ(dq.now(), after_bad);  // the reporting call wrote nothing
  apply_rope(t, Positions::from_offset(0), table);  // reported: calls work again
  ROPEKIT_CUDA_OK(cudaDeviceSynchronize());
  cuda_check_errors();
}

// Each table owns its device copy: grown tables, and a new table created where a destroyed one
// lived, use their own rows.
TEST(CudaTableCopies, FollowEachTable) {
  ROPEKIT_REQUIRE_GPU();
  for (int round = 0; round < 2; ++round) {
    SpecParams p;
    p.head_dim = 64;
    p.base = round == 0 ? 10000.0 : 500000.0;
    auto table = std::make_unique<RopeTable>(RopeSpec(p), 8);
    for (int64_t start : {0, 30, 200}) {
      *table = table->grown(start + 5);
      DeviceQ dq(static_cast<uint64_t>(start) + 1);
      RopeTensors t;
      t.q = dq.view();
      apply_rope(t, Positions::from_offset(start), *table);
      HostTensor cpu = dq.host;
      RopeTensors tc;
      tc.q = cpu.view(cpu.bytes.data(), Device::cpu());
      apply_rope(tc, Positions::from_offset(start), *table);
      const auto gpu = dq.now();
      double worst = 0.0;
      for (int64_t i = 0; i < cpu.numel_storage(); ++i)
        worst = std::max(worst, std::fabs(get(gpu, DType::f32, i) - get(cpu.bytes, DType::f32, i)));
      EXPECT_LE(worst, 1e-6) << "base " << p.base << " start " << start;
    }
  }
}

TEST(CudaStreams, RunsOnTheGivenStream) {
  ROPEKIT_REQUIRE_GPU();
  const RopeTable table(small_spec(), 16);
  DeviceQ dq(21);
  cudaStream_t stream = nullptr;
  ROPEKIT_CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  RopeTensors t;
  t.q = dq.view();
  ApplyOptions o;
  o.stream = stream;
  apply_rope(t, Positions::from_offset(2), table, o);
  ROPEKIT_CUDA_OK(cudaStreamSynchronize(stream));
  HostTensor cpu = dq.host;
  RopeTensors tc;
  tc.q = cpu.view(cpu.bytes.data(), Device::cpu());
  apply_rope(tc, Positions::from_offset(2), table);
  const auto gpu = dq.now();
  for (int64_t i = 0; i < cpu.numel_storage(); ++i)
    ASSERT_NEAR(get(gpu, DType::f32, i), get(cpu.bytes, DType::f32, i), 1e-6) << i;
  ROPEKIT_CUDA_OK(cudaStreamDestroy(stream));
}

}  // namespace
}  // namespace ropekit_cuda_test
