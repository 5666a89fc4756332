// ropekit/tensor_view.hpp: layouts are strides.
#include <gtest/gtest.h>

#include "test_support.hpp"

namespace {

using ropekit::DType;
using ropekit::TensorView;

TEST(TensorView, LayoutStrides) {
  float x = 0;
  const auto bshd = TensorView::bshd(&x, DType::f32, 2, 3, 4, 8);
  EXPECT_EQ(bshd.rank, 4);
  EXPECT_EQ(bshd.strides, (std::array<int64_t, 4>{96, 32, 8, 1}));
  EXPECT_EQ(bshd.numel(), 192);
  EXPECT_EQ(bshd.shape_string(), "[2, 3, 4, 8]");
  const auto bhsd = TensorView::bhsd(&x, DType::bf16, 2, 4, 3, 8);  // memory (B, H, S, D)
  EXPECT_EQ(bhsd.shape, (std::array<int64_t, 4>{2, 3, 4, 8}));     // logical (B, S, H, D)
  EXPECT_EQ(bhsd.strides, (std::array<int64_t, 4>{96, 8, 24, 1}));
  const auto thd = TensorView::thd(&x, DType::f16, 5, 2, 8);
  EXPECT_EQ(thd.rank, 3);
  EXPECT_EQ(thd.strides[0], 16);
  EXPECT_EQ(thd.strides[1], 8);
  EXPECT_EQ(thd.shape_string(), "[5, 2, 8]");
  EXPECT_EQ(TensorView::contiguous(&x, DType::f32, {6, 8}).strides[0], 8);
  EXPECT_THROW(TensorView::contiguous(&x, DType::f32, {1, 2, 3, 4, 5}), ropekit::Error);
}

TEST(TensorView, NamesAndSizes) {
  EXPECT_EQ(ropekit::dtype_size(DType::f32), 4);
  EXPECT_EQ(ropekit::dtype_size(DType::f16), 2);
  EXPECT_EQ(ropekit::dtype_size(DType::bf16), 2);
  EXPECT_EQ(ropekit::to_string(DType::bf16), "bf16");
  EXPECT_EQ(ropekit::to_string(ropekit::Device::cpu()), "cpu");
  EXPECT_EQ(ropekit::to_string(ropekit::Device::cuda(1)), "cuda:1");
  EXPECT_THROW((void)ropekit::dtype_size(static_cast<DType>(9)), ropekit::Error);
}

TEST(TensorView, IndexViewReadsBothWidths) {
  const int64_t a[] = {5, -1, 1LL << 40};
  const int32_t b[] = {7, 8};
  const ropekit::IndexView va(a, 3), vb(b, 2);
  EXPECT_EQ(va.type, ropekit::IndexType::i64);
  EXPECT_EQ(va[2], 1LL << 40);
  EXPECT_EQ(vb.type, ropekit::IndexType::i32);
  EXPECT_EQ(vb[1], 8);
  EXPECT_TRUE(ropekit::IndexView{}.empty());
}

TEST(TensorView, RequiredTableSize) {
  float x = 0;
  const auto q = TensorView::bshd(&x, DType::f32, 2, 5, 1, 8);
  EXPECT_EQ(ropekit::required_table_size({q}, ropekit::Positions::from_offset(10)), 15);
  const int64_t ids[] = {3, 99, 0, 1, 2, 3, 4, 5, 6, 7};
  EXPECT_EQ(ropekit::required_table_size({q}, ropekit::Positions::token_ids({ids, 10})), 100);
  const int32_t off[] = {0, 40};
  EXPECT_EQ(ropekit::required_table_size({q}, ropekit::Positions::per_sequence({off, 2})), 45);
  const auto packed = TensorView::thd(&x, DType::f32, 6, 1, 8);
  const int64_t cu[] = {0, 2, 2, 6};
  const int64_t poff[] = {100, 0, 7};
  EXPECT_EQ(ropekit::required_table_size({packed}, ropekit::Positions::packed({cu, 4}, {poff, 3})), 102);
  EXPECT_EQ(ropekit::required_table_size({TensorView::bshd(&x, DType::f32, 2, 0, 1, 8)}, ropekit::Positions::from_offset(10)), 0);
}

}  // namespace
