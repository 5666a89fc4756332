// ropekit/_torch_ops.so: native torch operators (TORCH_LIBRARY) for ropekit.torch, loaded with
// torch.ops.load_library. From Python a call costs the dispatcher's ~1 us instead of a Python
// custom op's or autograd.Function's tens of us; torch.compile sees opaque ops (Meta kernels give
// shapes) and autograd runs a C++ node whose backward calls the op again (double backward works).
//
//   ropekit::rope              out of place, q and k (either may have 0 heads), autograd
//   ropekit::rope_             in place, no autograd (refuses tensors that require grad)
//   ropekit::rotary_embedding  the engine convention: in place with the caller's cos/sin cache
//
// The kernels are ropekit._C's (python/src/torch_api.hpp), reached through a capsule at load time:
// this library links torch, not libropekit. Tables and specs are named by _C's registry handles.
#include <Python.h>

#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <c10/util/OptionalArrayRef.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/library.h>

#include <limits>
#include <optional>
#include <string>
#include <tuple>

#include "torch_api.hpp"

namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;
using ropekit::torch_api::Api;
using ropekit::torch_api::Status;

// ---- ropekit._C's kernels -----------------------------------------------------------------------

const Api* g_api = nullptr;

// At load (torch.ops.load_library, from ropekit.torch after it imported ropekit._C): the GIL is
// held, and _C is in sys.modules.
struct LoadApi {
  LoadApi() {
    if (!Py_IsInitialized()) return;
    const PyGILState_STATE gil = PyGILState_Ensure();
    const auto* api = static_cast<const Api*>(PyCapsule_Import(ropekit::torch_api::kCapsule, 0));
    if (api == nullptr) PyErr_Clear();
    else if (api->version == ropekit::torch_api::kVersion && api->size == sizeof(Api)) g_api = api;
    PyGILState_Release(gil);
  }
} load_api;

const Api& api() {
  TORCH_CHECK(g_api != nullptr,
              "ropekit: _torch_ops.so found no ropekit._C of its own build (the capsule ", ropekit::torch_api::kCapsule,
              "); import ropekit.torch, which loads it");
  return *g_api;
}

void check(Status s, const std::string& message) {
  if (s == Status::ok) return;
  if (s == Status::value_error) TORCH_CHECK_VALUE(false, message);
  TORCH_CHECK(false, message);
}

// ---- tensors as ropekit views, with ropekit._C's messages ----------------------------------------

std::string dtype_name(c10::ScalarType t) {
  using S = c10::ScalarType;
  switch (t) {
    case S::Bool: return "bool8";
    case S::Byte: return "uint8";
    case S::Char: return "int8";
    case S::Short: return "int16";
    case S::Int: return "int32";
    case S::Long: return "int64";
    case S::Half: return "float16";
    case S::Float: return "float32";
    case S::Double: return "float64";
    case S::BFloat16: return "bfloat16";
    case S::ComplexFloat: return "complex64";
    case S::ComplexDouble: return "complex128";
    default: return c10::toString(t);
  }
}

ropekit::DType float_dtype(c10::ScalarType t, const char* name) {
  switch (t) {
    case c10::ScalarType::Float: return ropekit::DType::f32;
    case c10::ScalarType::Half: return ropekit::DType::f16;
    case c10::ScalarType::BFloat16: return ropekit::DType::bf16;
    case c10::ScalarType::Double: return ropekit::DType::f64;
    default:
      TORCH_CHECK_TYPE(false, name, ": expected dtype float32, float16, bfloat16 or float64, got ", dtype_name(t));
  }
}

ropekit::Device device_of(const Tensor& t, const char* name) {
  if (t.is_cpu()) return ropekit::Device::cpu();
  if (t.is_cuda()) return ropekit::Device::cuda(t.get_device());
  TORCH_CHECK_VALUE(false, name, ": expected an array on the CPU or a CUDA device, got ", t.device());
}

ropekit::TensorView view_of(const Tensor& t, const char* name, bool written) {
  ropekit::TensorView v;
  v.dtype = float_dtype(t.scalar_type(), name);
  v.device = device_of(t, name);
  const int64_t ndim = t.dim();
  TORCH_CHECK_VALUE(ndim >= 2 && ndim <= 4, "ropekit: ", name,
                    ".rank: expected 3 (tokens, heads, head_dim) or 4 (batch, seq, heads, head_dim) "
                    "(rotary_embedding: 2 to 4), got ", ndim);
  v.rank = static_cast<int>(ndim);
  for (int64_t d = 0; d < ndim; ++d) {
    v.shape[d] = t.size(d);
    v.strides[d] = t.stride(d);
  }
  v.data = written ? t.mutable_data_ptr() : const_cast<void*>(t.const_data_ptr());
  return v;
}

ropekit::IndexView index_of(const Tensor& t, const char* name) {
  const c10::ScalarType s = t.scalar_type();
  TORCH_CHECK_TYPE(s == c10::ScalarType::Int || s == c10::ScalarType::Long, name,
                   ": expected dtype int32 or int64, got ", dtype_name(s));
  int64_t expected = 1;
  for (int64_t i = t.dim(); i-- > 0 && t.numel() > 0;) {  // (an empty array's strides are anything)
    TORCH_CHECK_VALUE(t.size(i) == 1 || t.stride(i) == expected, "ropekit: ", name, ": expected a contiguous array");
    expected *= t.size(i);
  }
  const ropekit::Device device = device_of(t, name);
  if (s == c10::ScalarType::Long) return ropekit::IndexView(t.const_data_ptr<int64_t>(), t.numel(), device);
  return ropekit::IndexView(t.const_data_ptr<int32_t>(), t.numel(), device);
}

ropekit::CosSinCacheView cache_of(const Tensor& a) {
  const bool contiguous = a.dim() == 2 && (a.size(1) <= 1 || a.stride(1) == 1) &&
                          (a.size(0) <= 1 || a.stride(0) == a.size(1));
  TORCH_CHECK_VALUE(contiguous, "ropekit: cos_sin_cache: expected a contiguous 2-D [max_position, rot_dim] array, got ",
                    a.dim(), " dimensions", a.dim() == 2 ? " with strides" : "");
  ropekit::CosSinCacheView v;
  v.data = a.const_data_ptr();
  v.dtype = float_dtype(a.scalar_type(), "cos_sin_cache");
  v.device = device_of(a, "cos_sin_cache");
  v.max_position = a.size(0);
  v.rot_dim = a.size(1);
  return v;
}

int64_t int_arg(const c10::SymInt& v, const char* name, int64_t lo, int64_t hi) {
  const int64_t x = v.expect_int();
  TORCH_CHECK_VALUE(x >= lo && x <= hi, name, ": expected an integer in [", lo, ", ", hi, "], got ", x);
  return x;
}

// The current stream of t's device (torch's, as ropekit.torch passes it).
void* stream_of(const Tensor& t) {
  if (!t.is_cuda()) return nullptr;
  return c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->getStream(t.device()).native_handle();
}

// M-RoPE ids ((3, B, S) for rank-4 q, (3, T) for rank 3) have one dimension more than one id a
// token: their first extent is the axis count.
ropekit::Positions positions_of(int64_t start, const OptTensor& offsets, const OptTensor& ids,
                                const OptTensor& cu_seqlens, int64_t q_rank) {
  ropekit::Positions p;
  if (cu_seqlens) {
    TORCH_CHECK_VALUE(!ids, "ropekit: positions: give cu_seqlens or ids, not both");
    ropekit::IndexView off;
    if (offsets) off = index_of(*offsets, "offsets");
    p = ropekit::Positions::packed(index_of(*cu_seqlens, "cu_seqlens"), off);
  } else if (ids) {
    TORCH_CHECK_VALUE(!offsets, "ropekit: positions: give ids or offsets, not both");
    p = ropekit::Positions::token_ids(index_of(*ids, "ids"), ids->dim() > 1 && ids->dim() == q_rank - 1 ? ids->size(0) : 1);
  } else if (offsets) {
    p = ropekit::Positions::per_sequence(index_of(*offsets, "offsets"));
  } else {
    p = ropekit::Positions::from_offset(start);
  }
  TORCH_CHECK_VALUE(start == 0 || p.kind == ropekit::Positions::Kind::from_offset,
                    "ropekit: start: expected 0 when offsets, ids or cu_seqlens give the positions");
  return p;
}

ropekit::Direction direction_of(const c10::SymInt& d) {
  const int64_t x = d.expect_int();
  TORCH_CHECK_VALUE(x >= 0 && x <= 2, "direction: expected 0 (forward), 1 (backward) or 2 (inverse), got ", x);
  return static_cast<ropekit::Direction>(x);
}

// Rotate (q, k) into (q_out, k_out), or in place where those are absent.
void run(const Tensor& q, const OptTensor& k, const OptTensor& q_out, const OptTensor& k_out, int64_t table,
         int64_t start, const OptTensor& offsets, const OptTensor& ids, const OptTensor& cu_seqlens,
         ropekit::Direction direction, double xpos_center, bool compute_sincos, int num_threads) {
  const Api& a = api();
  ropekit::RopeTensors t;
  t.q = view_of(q, "q", !q_out);
  if (k) t.k = view_of(*k, "k", !k_out);
  if (q_out) t.q_out = view_of(*q_out, "q_out", true);
  if (k_out) t.k_out = view_of(*k_out, "k_out", true);
  const ropekit::Positions positions = positions_of(start, offsets, ids, cu_seqlens, q.dim());
  const ropekit::ApplyOptions options{direction, xpos_center, compute_sincos, num_threads, stream_of(q)};
  // A dynamic table picks its frequencies from the largest position: read it from host copies.
  const auto on_device = [](const OptTensor& x) { return x && !x->is_cpu(); };
  OptTensor host[3];
  std::optional<ropekit::Positions> host_positions;
  if ((on_device(offsets) || on_device(ids) || on_device(cu_seqlens)) && a.needs_host_positions(table)) {
    const OptTensor* args[3] = {&offsets, &ids, &cu_seqlens};
    for (int i = 0; i < 3; ++i)
      if (*args[i]) host[i] = (*args[i])->cpu();
    host_positions = positions_of(start, host[0], host[1], host[2], q.dim());
  }
  std::string message;
  check(a.apply(table, t, positions, host_positions ? &*host_positions : nullptr, options, &message), message);
}

// Symbolic sizes too (the Meta kernel runs under torch.compile's dynamic shapes).
Tensor last_contiguous(const Tensor& x) {
  return x.sym_numel() == 0 || x.sym_stride(-1) == 1 ? x : x.contiguous();
}

// ---- ropekit::rope ------------------------------------------------------------------------------

using RopeSig = std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, c10::SymInt, c10::SymInt, const OptTensor&,
                                           const OptTensor&, const OptTensor&, c10::SymInt, double, bool, c10::SymInt);

std::tuple<Tensor, Tensor> rope_kernel(const Tensor& q_in, const Tensor& k_in, c10::SymInt table, c10::SymInt start,
                                       const OptTensor& offsets, const OptTensor& ids, const OptTensor& cu_seqlens,
                                       c10::SymInt direction, double xpos_center, bool compute_sincos,
                                       c10::SymInt num_threads) {
  const Tensor q = last_contiguous(q_in), k = last_contiguous(k_in);
  Tensor q_out = at::empty_like(q), k_out = at::empty_like(k);
  run(q, k, q_out, k_out, table.expect_int(), start.expect_int(), offsets, ids, cu_seqlens, direction_of(direction),
      xpos_center, compute_sincos,
      static_cast<int>(int_arg(num_threads, "num_threads", 0, std::numeric_limits<int>::max())));
  return {q_out, k_out};
}

std::tuple<Tensor, Tensor> rope_meta(const Tensor& q, const Tensor& k, c10::SymInt, c10::SymInt, const OptTensor&,
                                     const OptTensor&, const OptTensor&, c10::SymInt, double, bool, c10::SymInt) {
  return {at::empty_like(last_contiguous(q)), at::empty_like(last_contiguous(k))};
}

const c10::TypedOperatorHandle<RopeSig>& rope_op() {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("ropekit::rope", "").typed<RopeSig>();
  return op;
}

// q with no heads: the op rotates q and k together, so a side without a gradient is given none.
Tensor no_heads(const Tensor& like) {
  std::vector<c10::SymInt> shape(like.sym_sizes().begin(), like.sym_sizes().end());
  shape[shape.size() - 2] = 0;
  return at::empty_symint(shape, like.options());
}

// The transpose of a*s*R(t) is a*s*R(-t) and back: the backward is the op again, called through
// autograd, so it is differentiable in turn. A hand-written node rather than
// torch::autograd::Function: that one builds its node and an IValue map on every call, even
// without grad (microseconds at decode sizes). Not supported: compiled autograd
// (torch._dynamo.compiled_autograd), which needs compiled_args / apply_with_saved.
struct RopeBackward final : public torch::autograd::Node {
  torch::autograd::SavedVariable offsets, ids, cu_seqlens;
  c10::SymInt table, start, num_threads;
  int64_t direction = 0;
  double xpos_center = 0.0;
  bool compute_sincos = false;
  std::optional<int64_t> held;  // the handle this node keeps alive (eager autograd)

  ~RopeBackward() override {
    if (held) api().release(*held);
  }

  std::string name() const override { return "ropekit::RopeBackward"; }

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    TORCH_CHECK(direction != static_cast<int64_t>(ropekit::Direction::inverse),
                "ropekit: the inverse direction has no backward kernel");
    const int64_t back = direction == static_cast<int64_t>(ropekit::Direction::forward)
                             ? static_cast<int64_t>(ropekit::Direction::backward)
                             : static_cast<int64_t>(ropekit::Direction::forward);
    torch::autograd::variable_list out(2);
    const bool want_q = grads[0].defined() && task_should_compute_output(0);
    const bool want_k = grads[1].defined() && task_should_compute_output(1);
    if (!want_q && !want_k) return out;
    const auto opt = [this](const torch::autograd::SavedVariable& v) {
      Tensor t = v.unpack(getptr());
      return t.defined() ? OptTensor(std::move(t)) : OptTensor();
    };
    // The op rotates q and k together: a side without a gradient is given no heads.
    const Tensor gq = want_q ? grads[0] : no_heads(grads[1]);
    const Tensor gk = want_k ? grads[1] : no_heads(grads[0]);
    auto [dq, dk] = rope_op().call(gq, gk, table, start, opt(offsets), opt(ids), opt(cu_seqlens), c10::SymInt(back),
                                   xpos_center, compute_sincos, num_threads);
    if (want_q) out[0] = std::move(dq);
    if (want_k) out[1] = std::move(dk);
    return out;
  }

  void release_variables() override {
    offsets.reset_data();
    ids.reset_data();
    cu_seqlens.reset_data();
  }
};

std::tuple<Tensor, Tensor> rope_autograd(const Tensor& q, const Tensor& k, c10::SymInt table, c10::SymInt start,
                                         const OptTensor& offsets, const OptTensor& ids, const OptTensor& cu_seqlens,
                                         c10::SymInt direction, double xpos_center, bool compute_sincos,
                                         c10::SymInt num_threads) {
  const bool grad = at::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad());
  TORCH_CHECK(!q._fw_grad(0).defined() && !k._fw_grad(0).defined(),
              "ropekit: forward-mode AD (dual tensors) is not supported by ropekit::rope");
  c10::intrusive_ptr<RopeBackward> node;
  if (grad) {
    node = c10::make_intrusive<RopeBackward>();
    node->set_next_edges(torch::autograd::collect_next_edges(q, k));
    node->offsets = torch::autograd::SavedVariable(offsets, false);
    node->ids = torch::autograd::SavedVariable(ids, false);
    node->cu_seqlens = torch::autograd::SavedVariable(cu_seqlens, false);
    node->table = table;
    if (const auto h = table.maybe_as_int()) {
      api().acquire(*h);
      node->held = *h;
    }
    node->start = start;
    node->num_threads = num_threads;
    node->direction = direction.guard_int(__FILE__, __LINE__);
    node->xpos_center = xpos_center;
    node->compute_sincos = compute_sincos;
  }
  Tensor q_out, k_out;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    std::tie(q_out, k_out) = rope_op().call(q, k, std::move(table), std::move(start), offsets, ids, cu_seqlens,
                                            std::move(direction), xpos_center, compute_sincos, std::move(num_threads));
  }
  if (node) {
    torch::autograd::set_history(q_out, node);
    torch::autograd::set_history(k_out, node);
    torch::autograd::fire_node_creation_hooks(node);
  }
  return {q_out, k_out};
}

// ---- in place: ropekit::rope_ and ropekit::rotary_embedding ----------------------------------------

void bump(const Tensor& t) { t.unsafeGetTensorImpl()->bump_version(); }

using RopeInplaceSig = void(const Tensor&, const OptTensor&, c10::SymInt, c10::SymInt, const OptTensor&,
                            const OptTensor&, const OptTensor&, c10::SymInt, double, bool, c10::SymInt);

void rope_inplace_kernel(const Tensor& q, const OptTensor& k, c10::SymInt table, c10::SymInt start,
                         const OptTensor& offsets, const OptTensor& ids, const OptTensor& cu_seqlens,
                         c10::SymInt direction, double xpos_center, bool compute_sincos, c10::SymInt num_threads) {
  run(q, k, std::nullopt, std::nullopt, table.expect_int(), start.expect_int(), offsets, ids, cu_seqlens,
      direction_of(direction), xpos_center, compute_sincos,
      static_cast<int>(int_arg(num_threads, "num_threads", 0, std::numeric_limits<int>::max())));
}

void rope_inplace_meta(const Tensor&, const OptTensor&, c10::SymInt, c10::SymInt, const OptTensor&, const OptTensor&,
                       const OptTensor&, c10::SymInt, double, bool, c10::SymInt) {}

// A rotation in place has no backward here: refuse tensors autograd would track, and count the
// write (torch's in-place ops do both), so a tensor autograd saved cannot be used stale.
void rope_inplace_autograd(const Tensor& q, const OptTensor& k, c10::SymInt table, c10::SymInt start,
                           const OptTensor& offsets, const OptTensor& ids, const OptTensor& cu_seqlens,
                           c10::SymInt direction, double xpos_center, bool compute_sincos, c10::SymInt num_threads) {
  if (at::GradMode::is_enabled()) {
    for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"q", &q}, {"k", k ? &*k : nullptr}})
      TORCH_CHECK_VALUE(t == nullptr || !t->requires_grad(), name,
                        ": requires grad, and a rotation in place is not recorded by autograd; use inplace=False "
                        "(differentiable) or torch.no_grad()");
  }
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto op =
        c10::Dispatcher::singleton().findSchemaOrThrow("ropekit::rope_", "").typed<RopeInplaceSig>();
    op.call(q, k, std::move(table), std::move(start), offsets, ids, cu_seqlens, std::move(direction), xpos_center,
            compute_sincos, std::move(num_threads));
  }
  bump(q);
  if (k) bump(*k);
}

using RotarySig = void(const Tensor&, const Tensor&, const OptTensor&, c10::SymInt, const Tensor&, bool, c10::SymInt,
                       bool, c10::SymInt, c10::OptionalArrayRef<int64_t>, bool);

// mrope_section: None or empty (plain RoPE), or the 3 section sizes of ropekit::MRope.
std::optional<ropekit::MRope> mrope_of(c10::OptionalArrayRef<int64_t> section, bool interleaved) {
  if (!section || section->empty()) return std::nullopt;
  TORCH_CHECK_VALUE(section->size() == 3, "ropekit: mrope_section: expected 3 section sizes (t, h, w), got ",
                    section->size());
  return ropekit::MRope{{(*section)[0], (*section)[1], (*section)[2]}, interleaved};
}

void rotary_kernel(const Tensor& positions, const Tensor& query, const OptTensor& key, c10::SymInt head_size,
                   const Tensor& cos_sin_cache, bool is_neox, c10::SymInt rope_dim_offset, bool inverse,
                   c10::SymInt num_threads, c10::OptionalArrayRef<int64_t> mrope_section, bool mrope_interleaved) {
  const Api& a = api();
  ropekit::EngineOptions options;
  options.num_threads = static_cast<int>(int_arg(num_threads, "num_threads", 0, std::numeric_limits<int>::max()));
  options.stream = stream_of(query);
  options.mrope = mrope_of(mrope_section, mrope_interleaved);
  const Tensor dense_positions = positions.contiguous();  // expanded or strided ids, as apply_rope takes them
  const ropekit::IndexView pos = index_of(dense_positions, "positions");
  const ropekit::CosSinCacheView cache = cache_of(cos_sin_cache);
  const ropekit::TensorView q = view_of(query, "query", true);
  std::optional<ropekit::TensorView> k;
  if (key) k = view_of(*key, "key", true);
  std::string message;
  check(a.rotary_embedding(pos, q, k, head_size.expect_int(), cache, is_neox, rope_dim_offset.expect_int(), inverse,
                           options, &message),
        message);
}

void rotary_meta(const Tensor&, const Tensor&, const OptTensor&, c10::SymInt, const Tensor&, bool, c10::SymInt, bool,
                 c10::SymInt, c10::OptionalArrayRef<int64_t>, bool) {}

void rotary_autograd(const Tensor& positions, const Tensor& query, const OptTensor& key, c10::SymInt head_size,
                     const Tensor& cos_sin_cache, bool is_neox, c10::SymInt rope_dim_offset, bool inverse,
                     c10::SymInt num_threads, c10::OptionalArrayRef<int64_t> mrope_section, bool mrope_interleaved) {
  if (at::GradMode::is_enabled()) {
    for (const auto& [name, t] : {std::pair<const char*, const Tensor*>{"query", &query}, {"key", key ? &*key : nullptr}})
      TORCH_CHECK_VALUE(t == nullptr || !t->requires_grad(), name,
                        ": requires grad; rotary_embedding rotates in place without autograd (use "
                        "ropekit.torch.apply_rope, or torch.no_grad())");
  }
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto op =
        c10::Dispatcher::singleton().findSchemaOrThrow("ropekit::rotary_embedding", "").typed<RotarySig>();
    op.call(positions, query, key, std::move(head_size), cos_sin_cache, is_neox, std::move(rope_dim_offset), inverse,
            std::move(num_threads), mrope_section, mrope_interleaved);
  }
  bump(query);
  if (key) bump(*key);
}

}  // namespace

TORCH_LIBRARY(ropekit, m) {
  m.def("rope(Tensor q, Tensor k, SymInt table, SymInt start, Tensor? offsets, Tensor? ids, Tensor? cu_seqlens, "
        "SymInt direction, float xpos_center, bool compute_sincos, SymInt num_threads) -> (Tensor, Tensor)");
  m.def("rope_(Tensor(a!) q, Tensor(b!)? k, SymInt table, SymInt start, Tensor? offsets, Tensor? ids, "
        "Tensor? cu_seqlens, SymInt direction, float xpos_center, bool compute_sincos, SymInt num_threads) -> ()");
  m.def("rotary_embedding(Tensor positions, Tensor(a!) query, Tensor(b!)? key, SymInt head_size, "
        "Tensor cos_sin_cache, bool is_neox, SymInt rope_dim_offset, bool inverse, SymInt num_threads, "
        "int[]? mrope_section=None, bool mrope_interleaved=False) -> ()");
}

TORCH_LIBRARY_IMPL(ropekit, CPU, m) {
  m.impl("rope", rope_kernel);
  m.impl("rope_", rope_inplace_kernel);
  m.impl("rotary_embedding", rotary_kernel);
}

// The same kernels: ropekit._C dispatches on the views' device (an error where it has no CUDA).
TORCH_LIBRARY_IMPL(ropekit, CUDA, m) {
  m.impl("rope", rope_kernel);
  m.impl("rope_", rope_inplace_kernel);
  m.impl("rotary_embedding", rotary_kernel);
}

TORCH_LIBRARY_IMPL(ropekit, Meta, m) {
  m.impl("rope", rope_meta);
  m.impl("rope_", rope_inplace_meta);
  m.impl("rotary_embedding", rotary_meta);
}

TORCH_LIBRARY_IMPL(ropekit, Autograd, m) {
  m.impl("rope", rope_autograd);
  m.impl("rope_", rope_inplace_autograd);
  m.impl("rotary_embedding", rotary_autograd);
}
