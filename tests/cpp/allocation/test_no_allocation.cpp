// A decode step allocates nothing: after a first call (thread-local buffers, the thread pool), the
// hot calls of an engine's loop, apply_rope with a table and rotary_embedding, make no heap
// allocation. An allocation per call once cost more than the rotation of a decode step (the names
// of checked arguments were formatted on every call). Its own executable: it replaces operator new.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <vector>

#include "ropekit/apply.hpp"
#include "ropekit/engine.hpp"
#include "ropekit/table.hpp"

namespace {
std::atomic<long> g_allocations{0};
}  // namespace

void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) { return operator new(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace {

using namespace ropekit;

constexpr int64_t kBatch = 32, kQHeads = 32, kKHeads = 8, kHeadDim = 128;

RopeSpec llama3_heads() {
  SpecParams sp;
  sp.head_dim = kHeadDim;
  sp.base = 500000.0;
  return RopeSpec(sp);
}

// Allocations made by `call` after it has run `warm` times.
template <typename F>
long allocations_of(F&& call, int warm = 2) {
  for (int i = 0; i < warm; ++i) call();
  const long before = g_allocations.load();
  for (int i = 0; i < 3; ++i) call();
  return g_allocations.load() - before;
}

struct DecodeBatch {
  DType dtype;
  std::vector<uint16_t> q, k;  // f32 rows use two entries per element
  std::vector<int64_t> offsets, ids, cu_seqlens;
  explicit DecodeBatch(DType d) : dtype(d) {
    const size_t per = d == DType::f32 ? 2 : 1;
    q.assign(kBatch * kQHeads * kHeadDim * per, 0x3c00);
    k.assign(kBatch * kKHeads * kHeadDim * per, 0x3c00);
    for (int64_t b = 0; b < kBatch; ++b) {
      offsets.push_back(1000 + 37 * b);
      ids.push_back(1000 + 37 * b);
      cu_seqlens.push_back(b);
    }
    cu_seqlens.push_back(kBatch);
  }
  RopeTensors bshd() {
    RopeTensors t;
    t.q = TensorView::bshd(q.data(), dtype, kBatch, 1, kQHeads, kHeadDim);
    t.k = TensorView::bshd(k.data(), dtype, kBatch, 1, kKHeads, kHeadDim);
    return t;
  }
  RopeTensors packed() {
    RopeTensors t;
    t.q = TensorView::thd(q.data(), dtype, kBatch, kQHeads, kHeadDim);
    t.k = TensorView::thd(k.data(), dtype, kBatch, kKHeads, kHeadDim);
    return t;
  }
};

class NoAllocation : public ::testing::TestWithParam<DType> {};

TEST_P(NoAllocation, ApplyRopeWithATableAtDecode) {
  DecodeBatch batch(GetParam());
  const RopeTable table = RopeTable(llama3_heads()).for_seq_len(4096);
  const IndexView offsets(batch.offsets.data(), kBatch);
  const IndexView ids(batch.ids.data(), kBatch);
  const IndexView cu(batch.cu_seqlens.data(), kBatch + 1);
  for (const bool sincos : {false, true}) {
    ApplyOptions options;
    options.compute_sincos = sincos;
    SCOPED_TRACE(sincos ? "in-kernel sincos" : "table rows");
    EXPECT_EQ(allocations_of([&] { apply_rope(batch.bshd(), Positions::per_sequence(offsets), table, options); }), 0);
    EXPECT_EQ(allocations_of([&] { apply_rope(batch.packed(), Positions::token_ids(ids), table, options); }), 0);
    EXPECT_EQ(allocations_of([&] { apply_rope(batch.packed(), Positions::packed(cu, offsets), table, options); }), 0);
  }
}

TEST_P(NoAllocation, RotaryEmbeddingAtDecode) {
  DecodeBatch batch(GetParam());
  const std::vector<float> cache = cos_sin_cache(llama3_heads(), 4096);
  CosSinCacheView view;
  view.data = cache.data();
  view.max_position = 4096;
  view.rot_dim = kHeadDim;
  const RopeTensors t = batch.packed();
  const std::optional<TensorView> key = t.k;
  const IndexView positions(batch.ids.data(), kBatch);
  EXPECT_EQ(allocations_of([&] { rotary_embedding(positions, t.q, key, kHeadDim, view, true); }), 0);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, NoAllocation, ::testing::Values(DType::f32, DType::bf16, DType::f16),
                         [](const auto& info) { return std::string(to_string(info.param)); });

// The count sees the library's allocations: a call that must allocate (the spec form builds its table).
TEST(NoAllocationCounter, SeesTheLibrarysAllocations) {
  DecodeBatch batch(DType::f32);
  const std::vector<int64_t> offsets(kBatch, 7);
  EXPECT_GT(allocations_of([&] {
              apply_rope(batch.bshd(), Positions::per_sequence(IndexView(offsets.data(), kBatch)), llama3_heads());
            }),
            0);
}

}  // namespace
