#pragma once
// The whole public API.
#include "ropekit/apply.hpp"
#include "ropekit/cuda.hpp"
#include "ropekit/engine.hpp"
#include "ropekit/table.hpp"
#include "ropekit/error.hpp"
#include "ropekit/frequencies.hpp"
#include "ropekit/gguf.hpp"
#include "ropekit/hf_config.hpp"
#include "ropekit/model_rope.hpp"
#include "ropekit/spec.hpp"
#include "ropekit/tensor_view.hpp"
#include "ropekit/version.hpp"
