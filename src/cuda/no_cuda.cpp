// ropekit/cuda.hpp in a build without the CUDA backend: nothing can have been recorded.
#include "ropekit/cuda.hpp"

namespace ropekit {

void cuda_check_errors() {}
void cuda_check_errors(void*) {}

}  // namespace ropekit
