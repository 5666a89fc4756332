#pragma once
// Memory overlap between strided views, exact for the layouts engines use (slices of one fused
// qkv buffer, BSHD/BHSD/THD), conservative ("may overlap") past a work budget.
#include <string>

#include "ropekit/tensor_view.hpp"

namespace ropekit::detail {

// True when two views may share a byte.
bool may_overlap(const TensorView& a, const TensorView& b);
// True when some element of the view may be reached by two different indices.
bool self_overlapping(const TensorView& v);
// Same memory, same dtype, same shape and strides.
bool same_view(const TensorView& a, const TensorView& b);
// Element bytes and the byte offset of the last element below 2^62 (what every overlap and offset
// computation relies on); an Error naming `name` otherwise. Call before the functions above.
void check_extent(const TensorView& v, const std::string& name);

}  // namespace ropekit::detail
