#pragma once
// Errors raised by ropekit. Every message names the argument, the value seen and what was expected.
#include <stdexcept>
#include <string>

#include "ropekit/export.hpp"

namespace ropekit {

class ROPEKIT_API Error : public std::invalid_argument {
 public:
  explicit Error(const std::string& message) : std::invalid_argument("ropekit: " + message) {}
};

// A failed CUDA runtime call or kernel launch (the message carries the CUDA error string).
class ROPEKIT_API CudaError : public std::runtime_error {
 public:
  explicit CudaError(const std::string& message) : std::runtime_error("ropekit (cuda): " + message) {}
};

}  // namespace ropekit
