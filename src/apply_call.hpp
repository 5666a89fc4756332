#pragma once
// What apply_rope and rotary_embedding share: the checks of q, k, outputs and positions that
// produce a RopeParams, and the hand-over to the backend of the views' device.
#include <string>

#include "backend.hpp"

namespace ropekit::detail {

struct CheckedCall {
  RopeParams params;   // everything but the table data, direction, stream and threads
  int64_t needed = 0;  // largest position + 1, or -1 when positions live on a device
  int64_t lowest = 0;  // smallest position (when needed > 0)
};

// What errors call q and k (rotary_embedding: query and key).
struct OperandNames {
  std::string q = "q";
  std::string k = "k";
};

// q, k, q_out, k_out and positions checked against head_dim, rotary_dim and style of `spec`.
CheckedCall check_call(const RopeTensors& tensors, const Positions& positions, const RopeSpec& spec,
                       const OperandNames& names);

void dispatch(const RopeParams& params);

}  // namespace ropekit::detail
