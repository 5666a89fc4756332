// ropekit._C: the C++ core for Python. Arrays arrive through DLPack (numpy, torch CPU/CUDA, JAX,
// CuPy) as nb::ndarray and become ropekit::TensorView without copies; this file only converts and
// dispatches, every check of substance is the core's (ropekit::Error -> ValueError).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/variant.h>
#include <nanobind/stl/vector.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "ropekit/explicit.hpp"
#include "ropekit/ropekit.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace ropekit_python {
void bind_torch_api(nb::module_& m);  // torch_api.cpp: handles and kernels for ropekit/_torch_ops.so
}

namespace {

// An integer argument exactly as Python passed it (the signature still says int). int_arg()
// converts it, so a value out of range is a ValueError naming the argument and the range, not
// nanobind's "incompatible function arguments" dump.
struct PyInt {
  nb::handle h;
};

}  // namespace

namespace nanobind::detail {
template <>
struct type_caster<PyInt> {
  NB_TYPE_CASTER(PyInt, const_name("int"))
  bool from_python(handle src, uint8_t, cleanup_list*) noexcept {
    value.h = src;
    return true;
  }
  static handle from_cpp(const PyInt& v, rv_policy, cleanup_list*) noexcept { return v.h.inc_ref(); }
};
}  // namespace nanobind::detail

namespace {

using ropekit::DType;
using ropekit::TensorView;

// Any DLPack array, read-only ones included (inputs that are only read).
using InArray = nb::ndarray<nb::ro>;
// A writable DLPack array (outputs, in-place operands).
using OutArray = nb::ndarray<>;

std::string dtype_name(nb::dlpack::dtype d) {
  const char* kind = "?";
  switch (static_cast<nb::dlpack::dtype_code>(d.code)) {
    case nb::dlpack::dtype_code::Int: kind = "int"; break;
    case nb::dlpack::dtype_code::UInt: kind = "uint"; break;
    case nb::dlpack::dtype_code::Float: kind = "float"; break;
    case nb::dlpack::dtype_code::Bfloat: kind = "bfloat"; break;
    case nb::dlpack::dtype_code::Complex: kind = "complex"; break;
    case nb::dlpack::dtype_code::Bool: kind = "bool"; break;
    default: break;
  }
  return std::string(kind) + std::to_string(d.bits) + (d.lanes != 1 ? "x" + std::to_string(d.lanes) : "");
}

DType float_dtype(nb::dlpack::dtype d, const char* name) {
  const auto code = static_cast<nb::dlpack::dtype_code>(d.code);
  if (d.lanes == 1) {
    if (code == nb::dlpack::dtype_code::Float && d.bits == 32) return DType::f32;
    if (code == nb::dlpack::dtype_code::Float && d.bits == 16) return DType::f16;
    if (code == nb::dlpack::dtype_code::Bfloat && d.bits == 16) return DType::bf16;
    if (code == nb::dlpack::dtype_code::Float && d.bits == 64) return DType::f64;
  }
  throw nb::type_error(
      (std::string(name) + ": expected dtype float32, float16, bfloat16 or float64, got " + dtype_name(d)).c_str());
}

// repr(h) cut to 60 characters; "an int of N bits" past Python's digit limit for repr.
std::string short_repr(nb::handle h) {
  constexpr Py_ssize_t limit = 60;
  PyObject* r = PyObject_Repr(h.ptr());
  if (r == nullptr) {
    PyErr_Clear();
    if (PyLong_Check(h.ptr())) {
      PyObject* bits = PyObject_CallMethod(h.ptr(), "bit_length", nullptr);
      const long long n = bits != nullptr ? PyLong_AsLongLong(bits) : -1;
      Py_XDECREF(bits);
      PyErr_Clear();
      if (n >= 0) return "an int of " + std::to_string(n) + " bits";
    }
    return std::string("<") + nb::type_name(h.type()).c_str() + ">";
  }
  Py_ssize_t n = 0;
  const char* text = PyUnicode_AsUTF8AndSize(r, &n);
  std::string out = text != nullptr ? std::string(text, static_cast<size_t>(n < limit ? n : limit)) : "?";
  if (text == nullptr) PyErr_Clear();
  if (n > limit) out += "...";
  Py_DECREF(r);
  return out;
}

// An int (or anything with __index__, bool excepted) in [lo, hi].
int64_t int_arg(PyInt v, const char* name, int64_t lo = std::numeric_limits<int64_t>::min(),
                int64_t hi = std::numeric_limits<int64_t>::max()) {
  PyObject* o = v.h.ptr();
  const std::string type = nb::type_name(v.h.type()).c_str();
  if (PyBool_Check(o) || type == "numpy.bool" || type == "numpy.bool_")
    throw nb::type_error((std::string(name) + ": expected an integer, got bool").c_str());
  PyObject* index = PyNumber_Index(o);
  if (index == nullptr) {
    PyErr_Clear();
    throw nb::type_error((std::string(name) + ": expected an integer, got " + type).c_str());
  }
  int overflow = 0;
  const long long x = PyLong_AsLongLongAndOverflow(index, &overflow);
  const bool failed = x == -1 && PyErr_Occurred() != nullptr;
  if (failed) PyErr_Clear();
  if (failed || overflow != 0 || x < lo || x > hi) {
    const std::string got = short_repr(index);
    Py_DECREF(index);
    const bool full = lo == std::numeric_limits<int64_t>::min() && hi == std::numeric_limits<int64_t>::max();
    const std::string range = full ? "[-2^63, 2^63 - 1] (int64)" : "[" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
    throw nb::value_error((std::string(name) + ": expected an integer in " + range + ", got " + got).c_str());
  }
  Py_DECREF(index);
  return static_cast<int64_t>(x);
}

ropekit::Device device_of(int32_t type, int32_t id, const char* name) {
  if (type == nb::device::cpu::value) return ropekit::Device::cpu();
  if (type == nb::device::cuda::value) return ropekit::Device::cuda(id);
  throw nb::value_error((std::string(name) + ": expected an array on the CPU or a CUDA device, got DLPack device type " +
                         std::to_string(type)).c_str());
}

// cache_dtype: the FP8 type of a uint8 KV-cache array (kv_cache_dtype); other arrays are floats.
template <typename Array>
TensorView view_of(const Array& a, const char* name, std::optional<DType> cache_dtype = std::nullopt) {
  TensorView v;
  if (cache_dtype) {
    const auto d = a.dtype();
    if (static_cast<nb::dlpack::dtype_code>(d.code) != nb::dlpack::dtype_code::UInt || d.bits != 8 || d.lanes != 1)
      throw nb::type_error((std::string(name) + ": expected dtype uint8 (FP8 codes) for kv_cache_dtype " +
                            ropekit::to_string(*cache_dtype) + ", got " + dtype_name(d)).c_str());
    v.dtype = *cache_dtype;
  } else {
    v.dtype = float_dtype(a.dtype(), name);
  }
  v.device = device_of(a.device_type(), a.device_id(), name);
  // Ranks 2 to 4 reach the core, which says which it takes (rotary_embedding also takes 2).
  const size_t ndim = a.ndim();
  if (ndim < 2 || ndim > 4)
    throw nb::value_error((std::string("ropekit: ") + name + ".rank: expected 3 (tokens, heads, head_dim) or 4 "
                           "(batch, seq, heads, head_dim) (rotary_embedding: 2 to 4), got " + std::to_string(ndim)).c_str());
  v.rank = static_cast<int>(ndim);
  for (size_t d = 0; d < ndim; ++d) {
    v.shape[d] = static_cast<int64_t>(a.shape(d));
    v.strides[d] = a.stride(d);  // nanobind strides are in elements, as TensorView's
  }
  v.data = const_cast<void*>(static_cast<const void*>(a.data()));
  return v;
}

// Integer vectors (positions): int32 or int64, contiguous, any shape (read flat).
template <typename Array>
ropekit::IndexView index_of(const Array& a, const char* name) {
  const auto d = a.dtype();
  const auto code = static_cast<nb::dlpack::dtype_code>(d.code);
  if (code != nb::dlpack::dtype_code::Int || d.lanes != 1 || (d.bits != 32 && d.bits != 64))
    throw nb::type_error((std::string(name) + ": expected dtype int32 or int64, got " + dtype_name(d)).c_str());
  int64_t n = 1;
  for (size_t i = 0; i < a.ndim(); ++i) n *= static_cast<int64_t>(a.shape(i));
  int64_t expected = 1;
  for (size_t i = a.ndim(); i-- > 0 && n > 0;) {  // (an empty array's strides are anything)
    if (a.shape(i) != 1 && a.stride(i) != expected)
      throw nb::value_error((std::string("ropekit: ") + name + ": expected a contiguous array").c_str());
    expected *= static_cast<int64_t>(a.shape(i));
  }
  const auto device = device_of(a.device_type(), a.device_id(), name);
  ropekit::IndexView v;
  if (d.bits == 64) v = ropekit::IndexView(static_cast<const int64_t*>(a.data()), n, device);
  else v = ropekit::IndexView(static_cast<const int32_t*>(a.data()), n, device);
  return v;
}

template <typename Array>
Array cast_array(nb::handle h, const char* name, const char* what) {
  Array out;
  if (!nb::try_cast(h, out, false))
    throw nb::type_error((std::string(name) + ": expected " + what + ", got " +
                          nb::type_name(h.type()).c_str()).c_str());
  return out;
}

struct Operands {
  // Keep the imported arrays alive for the duration of the call.
  std::vector<InArray> held_in;
  std::vector<OutArray> held_out;
  ropekit::RopeTensors tensors;
  ropekit::Positions positions;
};

// ---- torch tensors without DLPack ----------------------------------------------------------------
// torch's __dlpack__ costs microseconds a tensor, which decides decode speed. Plain torch.Tensor
// and nn.Parameter objects on the CPU or a CUDA device are read through their attributes instead
// (data_ptr, shape, stride, dtype); anything else (subclasses, other devices) takes DLPack.
struct TorchTypes {
  PyTypeObject* tensor = nullptr;
  PyTypeObject* parameter = nullptr;
  nb::object f32, f16, bf16, f64, i32, i64;
};

const TorchTypes* torch_types() {
  static TorchTypes types;
  static bool ready = false;
  if (ready) return &types;
  PyObject* torch = PyImport_GetModule(nb::str("torch").ptr());  // only once torch is imported
  if (torch == nullptr) {
    PyErr_Clear();
    return nullptr;
  }
  nb::object mod = nb::steal(torch);
  types.tensor = reinterpret_cast<PyTypeObject*>(mod.attr("Tensor").ptr());
  types.parameter = reinterpret_cast<PyTypeObject*>(mod.attr("nn").attr("Parameter").ptr());
  Py_INCREF(types.tensor);
  Py_INCREF(types.parameter);
  types.f32 = mod.attr("float32");
  types.f16 = mod.attr("float16");
  types.bf16 = mod.attr("bfloat16");
  types.f64 = mod.attr("float64");
  types.i32 = mod.attr("int32");
  types.i64 = mod.attr("int64");
  ready = true;
  return &types;
}

// The same interface as nb::ndarray (what view_of, index_of and cache_of read), filled from a
// tensor's attributes.
struct TorchArray {
  void* ptr = nullptr;
  nb::dlpack::dtype dt{};
  int32_t dev_type = nb::device::cpu::value;
  int32_t dev_id = 0;
  size_t nd = 0;
  std::array<int64_t, 8> sh{};
  std::array<int64_t, 8> st{};

  nb::dlpack::dtype dtype() const { return dt; }
  int32_t device_type() const { return dev_type; }
  int32_t device_id() const { return dev_id; }
  size_t ndim() const { return nd; }
  size_t shape(size_t d) const { return static_cast<size_t>(sh[d]); }
  int64_t stride(size_t d) const { return st[d]; }
  void* data() const { return ptr; }
};

// A plain torch tensor of a dtype ropekit reads, on the CPU or a CUDA device, without DLPack;
// nullopt: take DLPack (which also says what is wrong with anything else). Autograd is the
// Python layer's business (ropekit.torch): it refuses or detaches before calling.
std::optional<TorchArray> torch_array(nb::handle h) {
  const TorchTypes* types = torch_types();
  if (types == nullptr || (Py_TYPE(h.ptr()) != types->tensor && Py_TYPE(h.ptr()) != types->parameter)) return std::nullopt;
  TorchArray t;
  const nb::object dtype = h.attr("dtype");
  using code = nb::dlpack::dtype_code;
  const auto of = [](code c, uint8_t bits) { return nb::dlpack::dtype{static_cast<uint8_t>(c), bits, 1}; };
  if (dtype.is(types->f32)) t.dt = of(code::Float, 32);
  else if (dtype.is(types->f16)) t.dt = of(code::Float, 16);
  else if (dtype.is(types->bf16)) t.dt = of(code::Bfloat, 16);
  else if (dtype.is(types->f64)) t.dt = of(code::Float, 64);
  else if (dtype.is(types->i32)) t.dt = of(code::Int, 32);
  else if (dtype.is(types->i64)) t.dt = of(code::Int, 64);
  else return std::nullopt;
  if (nb::cast<bool>(h.attr("is_cuda"))) {
    t.dev_type = nb::device::cuda::value;
    t.dev_id = nb::cast<int32_t>(h.attr("get_device")());
  } else if (!nb::cast<bool>(h.attr("is_cpu"))) {
    return std::nullopt;
  }
  const nb::tuple shape = nb::borrow<nb::tuple>(h.attr("shape"));
  const nb::tuple strides = nb::borrow<nb::tuple>(h.attr("stride")());
  t.nd = nb::len(shape);
  if (t.nd > t.sh.size()) return std::nullopt;
  for (size_t d = 0; d < t.nd; ++d) {
    t.sh[d] = nb::cast<int64_t>(shape[d]);
    t.st[d] = nb::cast<int64_t>(strides[d]);
  }
  t.ptr = reinterpret_cast<void*>(nb::cast<uintptr_t>(h.attr("data_ptr")()));
  return t;
}

TensorView in_view(Operands& ops, nb::handle h, const char* name, bool written) {
  if (std::optional<TorchArray> t = torch_array(h)) return view_of(*t, name);
  if (written) {
    ops.held_out.push_back(cast_array<OutArray>(h, name, "a writable DLPack array (written in place)"));
    return view_of(ops.held_out.back(), name);
  }
  ops.held_in.push_back(cast_array<InArray>(h, name, "a DLPack array (numpy, torch, JAX, CuPy)"));
  return view_of(ops.held_in.back(), name);
}

// A KV cache: float arrays as they are (kv_cache_dtype "auto"), FP8 ones as uint8 codes.
TensorView cache_tensor_arg(Operands& ops, nb::handle h, const char* name, std::optional<DType> fp8) {
  if (!fp8) return in_view(ops, h, name, true);
  ops.held_out.push_back(cast_array<OutArray>(h, name, "a writable DLPack array (the cache)"));
  return view_of(ops.held_out.back(), name, fp8);
}

ropekit::IndexView index_arg(Operands& ops, nb::handle h, const char* name) {
  if (std::optional<TorchArray> t = torch_array(h)) return index_of(*t, name);
  ops.held_in.push_back(cast_array<InArray>(h, name, "an int32 or int64 DLPack array"));
  return index_of(ops.held_in.back(), name);
}

// M-RoPE ids, (3, B, S) for rank-4 q or (3, T) for rank 3, have one dimension more than one id
// a token: their first extent is the axis count (the core accepts 1 or 3).
int64_t ids_axes(nb::handle ids, int64_t q_rank) {
  const nb::tuple shape = nb::borrow<nb::tuple>(ids.attr("shape"));
  const auto ndim = static_cast<int64_t>(nb::len(shape));
  return ndim > 1 && ndim == q_rank - 1 ? nb::cast<int64_t>(shape[0]) : 1;
}

Operands gather(nb::handle q, nb::handle k, nb::handle q_out, nb::handle k_out, int64_t start, nb::handle offsets,
                nb::handle ids, nb::handle cu_seqlens) {
  Operands ops;
  ops.held_in.reserve(8);
  ops.held_out.reserve(4);
  ops.tensors.q = in_view(ops, q, "q", q_out.is_none());
  if (!k.is_none()) ops.tensors.k = in_view(ops, k, "k", k_out.is_none());
  if (!q_out.is_none()) ops.tensors.q_out = in_view(ops, q_out, "q_out", true);
  if (!k_out.is_none()) ops.tensors.k_out = in_view(ops, k_out, "k_out", true);
  if (!cu_seqlens.is_none()) {
    if (!ids.is_none()) throw nb::value_error("ropekit: positions: give cu_seqlens or ids, not both");
    ropekit::IndexView off;
    if (!offsets.is_none()) off = index_arg(ops, offsets, "offsets");
    ops.positions = ropekit::Positions::packed(index_arg(ops, cu_seqlens, "cu_seqlens"), off);
  } else if (!ids.is_none()) {
    if (!offsets.is_none()) throw nb::value_error("ropekit: positions: give ids or offsets, not both");
    ops.positions = ropekit::Positions::token_ids(index_arg(ops, ids, "ids"), ids_axes(ids, ops.tensors.q.rank));
  } else if (!offsets.is_none()) {
    ops.positions = ropekit::Positions::per_sequence(index_arg(ops, offsets, "offsets"));
  } else {
    ops.positions = ropekit::Positions::from_offset(start);
  }
  if (start != 0 && ops.positions.kind != ropekit::Positions::Kind::from_offset)
    throw nb::value_error("ropekit: start: expected 0 when offsets, ids or cu_seqlens give the positions");
  return ops;
}

// [max_position, rot_dim], contiguous: the engine's cos/sin cache (the core checks its dtype).
template <typename Array>
ropekit::CosSinCacheView cache_of(const Array& a) {
  const bool contiguous = a.ndim() == 2 && (a.shape(1) <= 1 || a.stride(1) == 1) &&
                          (a.shape(0) <= 1 || a.stride(0) == static_cast<int64_t>(a.shape(1)));
  if (!contiguous)
    throw nb::value_error(("ropekit: cos_sin_cache: expected a contiguous 2-D [max_position, rot_dim] array, got " +
                           std::to_string(a.ndim()) + " dimensions" + (a.ndim() == 2 ? " with strides" : "")).c_str());
  ropekit::CosSinCacheView v;
  v.data = a.data();
  v.dtype = float_dtype(a.dtype(), "cos_sin_cache");
  v.device = device_of(a.device_type(), a.device_id(), "cos_sin_cache");
  v.max_position = static_cast<int64_t>(a.shape(0));
  v.rot_dim = static_cast<int64_t>(a.shape(1));
  return v;
}

ropekit::CosSinCacheView cache_arg(Operands& ops, nb::handle h) {
  if (std::optional<TorchArray> t = torch_array(h)) return cache_of(*t);
  ops.held_in.push_back(cast_array<InArray>(h, "cos_sin_cache", "a DLPack array [max_position, rot_dim]"));
  return cache_of(ops.held_in.back());
}

ropekit::ApplyOptions options_of(ropekit::Direction direction, double xpos_center, bool compute_sincos, int num_threads,
                                 uintptr_t stream, std::optional<ropekit::QueryScale> query_scale = std::nullopt) {
  ropekit::ApplyOptions o;
  o.query_scale = query_scale;
  o.direction = direction;
  o.xpos_center = xpos_center;
  o.compute_sincos = compute_sincos;
  o.num_threads = num_threads;
  o.stream = reinterpret_cast<void*>(stream);
  return o;
}

template <typename T>
nb::ndarray<nb::numpy, T> to_numpy(std::vector<T> values, std::initializer_list<size_t> shape) {
  auto* owned = new std::vector<T>(std::move(values));
  nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return nb::ndarray<nb::numpy, T>(owned->data(), shape, owner);
}

nb::ndarray<nb::numpy, double> doubles(std::vector<double> v) {
  const size_t n = v.size();
  return to_numpy(std::move(v), {n});
}

// Rows (t, h, w) of HF's image_grid_thw / video_grid_thw.
std::vector<ropekit::VisionGrid> grids(const std::vector<std::vector<int64_t>>& rows, const char* name) {
  std::vector<ropekit::VisionGrid> out;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i].size() != 3)
      throw nb::value_error(("ropekit: " + std::string(name) + "[" + std::to_string(i) +
                             "]: expected 3 values (t, h, w), got " + std::to_string(rows[i].size()))
                                .c_str());
    out.push_back({rows[i][0], rows[i][1], rows[i][2]});
  }
  return out;
}

// The engine convention's options from Python: threads and an optional M-RoPE section triple.
ropekit::EngineOptions engine_options(PyInt num_threads, const std::optional<std::vector<int64_t>>& mrope_section,
                                      bool mrope_interleaved) {
  ropekit::EngineOptions options;
  if (mrope_section && !mrope_section->empty()) {
    if (mrope_section->size() != 3)
      throw nb::value_error(("ropekit: mrope_section: expected 3 section sizes (t, h, w), got " +
                             std::to_string(mrope_section->size())).c_str());
    options.mrope = ropekit::MRope{{(*mrope_section)[0], (*mrope_section)[1], (*mrope_section)[2]}, mrope_interleaved};
  }
  options.num_threads = static_cast<int>(int_arg(num_threads, "num_threads", 0, std::numeric_limits<int>::max()));
  return options;
}

// vLLM's kv_cache_dtype: "auto" (the cache's float dtype) or the FP8 type of uint8 caches.
std::optional<DType> fp8_arg(const std::string& kv_cache_dtype) {
  if (kv_cache_dtype == "fp8" || kv_cache_dtype == "fp8_e4m3") return DType::f8_e4m3;
  if (kv_cache_dtype == "fp8_e5m2") return DType::f8_e5m2;
  if (kv_cache_dtype != "auto")
    throw nb::value_error(("ropekit: kv_cache_dtype: expected \"auto\" (the caches' own float dtype), \"fp8\", "
                           "\"fp8_e4m3\" or \"fp8_e5m2\" (uint8 caches), got \"" + kv_cache_dtype + "\"").c_str());
  return std::nullopt;
}

ropekit::KvLayout layout_arg(const std::string& layout) {
  if (layout == "NHD" || layout == "nhd") return ropekit::KvLayout::nhd;
  if (layout == "HND" || layout == "hnd") return ropekit::KvLayout::hnd;
  throw nb::value_error(("ropekit: layout: expected \"NHD\" or \"HND\", got \"" + layout + "\"").c_str());
}

ropekit::Style style_arg(nb::handle h) {
  if (nb::isinstance<nb::str>(h)) return ropekit::style_from_string(nb::cast<std::string>(h));
  return nb::cast<ropekit::Style>(h);
}

}  // namespace

NB_MODULE(_C, m) {
  m.doc() = "ropekit C++ core: specs, frequencies, cos/sin tables and the apply kernels (DLPack arrays)";
  m.attr("__version__") = ROPEKIT_VERSION_STRING;
  m.attr("has_cuda") =
#if defined(ROPEKIT_HAS_CUDA)
      true;
#else
      false;
#endif

  // Tables held by torch autograd graphs alive at interpreter exit are not leaks of ours.
  nb::set_leak_warnings(false);

  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const ropekit::Error& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const ropekit::CudaError& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });

  nb::enum_<ropekit::Style>(m, "Style")
      .value("half", ropekit::Style::half)
      .value("interleaved", ropekit::Style::interleaved);
  nb::enum_<ropekit::Direction>(m, "Direction")
      .value("forward", ropekit::Direction::forward)
      .value("backward", ropekit::Direction::backward)
      .value("inverse", ropekit::Direction::inverse);

  namespace sc = ropekit::scaling;
  nb::class_<sc::None>(m, "NoScaling").def(nb::init<>()).def("__repr__", [](const sc::None&) { return "NoScaling()"; });
  nb::class_<sc::Linear>(m, "Linear")
      .def(nb::init<>())
      .def("__init__", [](sc::Linear* s, double factor) { new (s) sc::Linear{factor}; }, "factor"_a)
      .def_rw("factor", &sc::Linear::factor);
  nb::class_<sc::NtkAware>(m, "NtkAware")
      .def("__init__", [](sc::NtkAware* s, double alpha) { new (s) sc::NtkAware{alpha}; }, "alpha"_a)
      .def_rw("alpha", &sc::NtkAware::alpha);
  nb::class_<sc::DynamicNtk>(m, "DynamicNtk")
      .def("__init__",
           [](sc::DynamicNtk* s, double factor, PyInt original_max) {
             new (s) sc::DynamicNtk{factor, int_arg(original_max, "original_max")};
           },
           "factor"_a, "original_max"_a = 2048)
      .def_rw("factor", &sc::DynamicNtk::factor)
      .def_prop_rw("original_max", [](const sc::DynamicNtk& s) { return s.original_max; },
                   [](sc::DynamicNtk& s, PyInt v) { s.original_max = int_arg(v, "original_max"); });
  nb::class_<sc::Yarn>(m, "Yarn")
      .def("__init__",
           [](sc::Yarn* s, double factor, PyInt original_max, double beta_fast, double beta_slow,
              double extrapolation_factor, double attention_multiplier, std::optional<double> mscale,
              std::optional<double> mscale_all_dim, std::optional<double> attention_factor, bool truncate) {
             new (s) sc::Yarn{factor, int_arg(original_max, "original_max"), beta_fast, beta_slow, extrapolation_factor,
                              attention_multiplier, mscale, mscale_all_dim, attention_factor, truncate};
           },
           "factor"_a, "original_max"_a = 2048, "beta_fast"_a = 32.0, "beta_slow"_a = 1.0,
           "extrapolation_factor"_a = 1.0, "attention_multiplier"_a = 1.0, "mscale"_a = nb::none(),
           "mscale_all_dim"_a = nb::none(), "attention_factor"_a = nb::none(), "truncate"_a = true)
      .def_rw("factor", &sc::Yarn::factor)
      .def_prop_rw("original_max", [](const sc::Yarn& s) { return s.original_max; },
                   [](sc::Yarn& s, PyInt v) { s.original_max = int_arg(v, "original_max"); })
      .def_rw("beta_fast", &sc::Yarn::beta_fast)
      .def_rw("beta_slow", &sc::Yarn::beta_slow)
      .def_rw("extrapolation_factor", &sc::Yarn::extrapolation_factor)
      .def_rw("attention_multiplier", &sc::Yarn::attention_multiplier)
      .def_rw("mscale", &sc::Yarn::mscale)
      .def_rw("mscale_all_dim", &sc::Yarn::mscale_all_dim)
      .def_rw("attention_factor", &sc::Yarn::attention_factor)
      .def_rw("truncate", &sc::Yarn::truncate);
  nb::class_<sc::Llama3>(m, "Llama3")
      .def("__init__",
           [](sc::Llama3* s, double factor, double low, double high, PyInt original_max) {
             new (s) sc::Llama3{factor, low, high, int_arg(original_max, "original_max")};
           },
           "factor"_a = 8.0, "low_freq_factor"_a = 1.0, "high_freq_factor"_a = 4.0, "original_max"_a = 8192)
      .def_rw("factor", &sc::Llama3::factor)
      .def_rw("low_freq_factor", &sc::Llama3::low_freq_factor)
      .def_rw("high_freq_factor", &sc::Llama3::high_freq_factor)
      .def_prop_rw("original_max", [](const sc::Llama3& s) { return s.original_max; },
                   [](sc::Llama3& s, PyInt v) { s.original_max = int_arg(v, "original_max"); });
  nb::class_<sc::LongRope>(m, "LongRope")
      .def("__init__",
           [](sc::LongRope* s, std::vector<double> short_factor, std::vector<double> long_factor, PyInt original_max,
              double factor, std::optional<double> attention_factor) {
             new (s) sc::LongRope{std::move(short_factor), std::move(long_factor), int_arg(original_max, "original_max"),
                                  factor, attention_factor};
           },
           "short_factor"_a, "long_factor"_a, "original_max"_a = 4096, "factor"_a = 1.0,
           "attention_factor"_a = nb::none())
      .def_rw("short_factor", &sc::LongRope::short_factor)
      .def_rw("long_factor", &sc::LongRope::long_factor)
      .def_prop_rw("original_max", [](const sc::LongRope& s) { return s.original_max; },
                   [](sc::LongRope& s, PyInt v) { s.original_max = int_arg(v, "original_max"); })
      .def_rw("factor", &sc::LongRope::factor)
      .def_rw("attention_factor", &sc::LongRope::attention_factor);
  nb::class_<sc::Truncated>(m, "Truncated")
      .def("__init__", [](sc::Truncated* s, double a, double b, double rho) { new (s) sc::Truncated{a, b, rho}; },
           "a"_a, "b"_a, "rho"_a)
      .def_static("from_length", &sc::Truncated::from_length, "length"_a)
      .def_rw("a", &sc::Truncated::a)
      .def_rw("b", &sc::Truncated::b)
      .def_rw("rho", &sc::Truncated::rho);
  nb::class_<sc::Proportional>(m, "Proportional")
      .def("__init__", [](sc::Proportional* s, double fraction, double factor) { new (s) sc::Proportional{fraction, factor}; },
           "fraction"_a, "factor"_a = 1.0)
      .def_rw("fraction", &sc::Proportional::fraction)
      .def_rw("factor", &sc::Proportional::factor);
  nb::class_<ropekit::Xpos>(m, "Xpos")
      .def("__init__", [](ropekit::Xpos* x, double scale_base, double gamma) { new (x) ropekit::Xpos{scale_base, gamma}; },
           "scale_base"_a = 512.0, "gamma"_a = 0.4)
      .def_rw("scale_base", &ropekit::Xpos::scale_base)
      .def_rw("gamma", &ropekit::Xpos::gamma);

  nb::class_<ropekit::MRope>(m, "MRope")
      .def("__init__",
           [](ropekit::MRope* self, const std::vector<PyInt>& sections, bool interleaved) {
             if (sections.size() != 3)
               throw nb::value_error(("ropekit: mrope.sections: expected 3 pair counts (time, height, width), got " +
                                      std::to_string(sections.size()))
                                         .c_str());
             new (self) ropekit::MRope{{int_arg(sections[0], "mrope.sections[0]"), int_arg(sections[1], "mrope.sections[1]"),
                                        int_arg(sections[2], "mrope.sections[2]")},
                                       interleaved};
           },
           "sections"_a, "interleaved"_a = false)
      .def_prop_ro("sections", [](const ropekit::MRope& x) { return std::vector<int64_t>(x.sections.begin(), x.sections.end()); })
      .def_ro("interleaved", &ropekit::MRope::interleaved)
      .def("__eq__", [](const ropekit::MRope& a, const ropekit::MRope& b) { return a == b; })
      .def("__repr__", [](const ropekit::MRope& x) {
        return "MRope(sections=[" + std::to_string(x.sections[0]) + ", " + std::to_string(x.sections[1]) + ", " +
               std::to_string(x.sections[2]) + "], interleaved=" + (x.interleaved ? "True" : "False") + ")";
      });

  nb::class_<ropekit::Axial2d>(m, "Axial2d")
      .def("__init__", [](ropekit::Axial2d* self, bool odd) { new (self) ropekit::Axial2d{odd}; },
           "odd_second_half"_a = false)
      .def_ro("odd_second_half", &ropekit::Axial2d::odd_second_half)
      .def("__eq__", [](const ropekit::Axial2d& a, const ropekit::Axial2d& b) { return a == b; })
      .def("__repr__", [](const ropekit::Axial2d& x) {
        return std::string("Axial2d(odd_second_half=") + (x.odd_second_half ? "True" : "False") + ")";
      });

  // Weak references: ropekit.torch's custom op refers to specs and tables by handle without keeping them alive.
  nb::class_<ropekit::RopeSpec>(m, "RopeSpec", nb::is_weak_referenceable())
      .def("__init__",
           [](ropekit::RopeSpec* self, PyInt head_dim, PyInt rotary_dim, double base, nb::handle style,
              std::optional<ropekit::Scaling> scaling, std::optional<ropekit::Xpos> xpos,
              std::optional<ropekit::MRope> mrope, std::optional<ropekit::Axial2d> axial) {
             ropekit::SpecParams p;
             p.head_dim = int_arg(head_dim, "head_dim");
             p.rotary_dim = int_arg(rotary_dim, "rotary_dim");
             p.base = base;
             p.style = style_arg(style);
             if (scaling) p.scaling = *scaling;
             p.xpos = xpos;
             p.mrope = mrope;
             p.axial = axial;
             new (self) ropekit::RopeSpec(std::move(p));
           },
           "head_dim"_a, "rotary_dim"_a = 0, "base"_a = 10000.0, "style"_a = ropekit::Style::half,
           "scaling"_a = nb::none(), "xpos"_a = nb::none(), "mrope"_a = nb::none(), "axial"_a = nb::none())
      .def_prop_ro("head_dim", &ropekit::RopeSpec::head_dim)
      .def_prop_ro("rotary_dim", &ropekit::RopeSpec::rotary_dim)
      .def_prop_ro("pairs", &ropekit::RopeSpec::pairs)
      .def_prop_ro("base", &ropekit::RopeSpec::base)
      .def_prop_ro("style", &ropekit::RopeSpec::style)
      .def_prop_ro("scaling", [](const ropekit::RopeSpec& s) { return s.scaling(); })
      .def_prop_ro("scaling_name", &ropekit::RopeSpec::scaling_name)
      .def_prop_ro("xpos", [](const ropekit::RopeSpec& s) { return s.xpos(); })
      .def_prop_ro("mrope", [](const ropekit::RopeSpec& s) { return s.mrope(); })
      .def_prop_ro("axial", [](const ropekit::RopeSpec& s) { return s.axial(); })
      .def_prop_ro("position_axes", &ropekit::RopeSpec::position_axes)
      .def("describe", &ropekit::RopeSpec::describe)
      .def("__eq__", [](const ropekit::RopeSpec& a, const ropekit::RopeSpec& b) { return a == b; })
      // Equal specs describe alike, so the hash of the description agrees with ==.
      .def("__hash__", [](const ropekit::RopeSpec& s) { return std::hash<std::string>{}(s.describe()); })
      .def("__repr__", [](const ropekit::RopeSpec& s) { return "RopeSpec(" + s.describe() + ")"; });

  m.def("default_inv_freq",
        [](PyInt dim, double base) { return doubles(ropekit::default_inv_freq(int_arg(dim, "dim"), base)); },
        "dim"_a, "base"_a = 10000.0);
  m.def("inv_freq",
        [](const ropekit::RopeSpec& s, PyInt seq_len) { return doubles(ropekit::inv_freq(s, int_arg(seq_len, "seq_len"))); },
        "spec"_a, "seq_len"_a = 0);
  m.def("attention_factor", &ropekit::attention_factor, "spec"_a);
  m.def("xpos_zeta", [](const ropekit::RopeSpec& s) { return doubles(ropekit::xpos_zeta(s)); }, "spec"_a);
  m.def("find_correction_dim", &ropekit::find_correction_dim, "num_rotations"_a, "dim"_a, "base"_a = 10000.0,
        "max_position_embeddings"_a = 2048.0);
  m.def("find_correction_range", &ropekit::find_correction_range, "low_rot"_a, "high_rot"_a, "dim"_a,
        "base"_a = 10000.0, "max_position_embeddings"_a = 2048.0, "truncate"_a = true);
  m.def("linear_ramp_mask",
        [](double min, double max, PyInt n) { return doubles(ropekit::linear_ramp_mask(min, max, int_arg(n, "n"))); },
        "min"_a, "max"_a, "n"_a);
  m.def("get_mscale", &ropekit::get_mscale, "scale"_a, "mscale"_a = 1.0);

  // The HF config.json reader, on JSON text (ropekit.hf passes a transformers config as JSON).
  m.def("spec_from_hf_config_json", [](std::string_view json) { return ropekit::spec_from_hf_config_json(json); },
        "json"_a);
  nb::class_<ropekit::QueryScale>(m, "QueryScale",
                                  "q times t(p) = factor * (1 + beta * ln(1 + floor((p + shift) / length))): Llama 4's "
                                  "NoPE-layer temperature (shift 1), Ministral 3 / Mistral 4's llama_4_scaling (shift 0).")
      .def("__init__",
           [](ropekit::QueryScale* q, double factor, double beta, PyInt length, PyInt shift) {
             ropekit::QueryScale v{factor, beta, int_arg(length, "length"), int_arg(shift, "shift", 0)};
             v.validate();
             new (q) ropekit::QueryScale(v);
           },
           "factor"_a = 1.0, "beta"_a = 0.0, "length"_a = 1, "shift"_a = 0)
      .def_ro("factor", &ropekit::QueryScale::factor)
      .def_ro("beta", &ropekit::QueryScale::beta)
      .def_ro("length", &ropekit::QueryScale::length)
      .def_ro("shift", &ropekit::QueryScale::shift)
      .def("at", [](const ropekit::QueryScale& q, PyInt p) { return q.at(int_arg(p, "position", 0)); }, "position"_a,
           "t(position), in float64.")
      .def("describe", &ropekit::QueryScale::describe)
      .def("__eq__", [](const ropekit::QueryScale& a, const ropekit::QueryScale& b) { return a == b; })
      .def("__hash__", [](const ropekit::QueryScale& q) { return std::hash<std::string>{}(q.describe()); })
      .def("__repr__", [](const ropekit::QueryScale& q) { return "QueryScale(" + q.describe() + ")"; });
  nb::class_<ropekit::LayerRope>(m, "LayerRope", "One layer's RoPE: layer_type (\"\" if the config names none), spec "
                                                "(None: the layer has no RoPE), query_scale (None: none) and "
                                                "softmax_scale_factor (1: none).")
      .def_ro("layer_type", &ropekit::LayerRope::layer_type)
      .def_prop_ro("spec", [](const ropekit::LayerRope& l) { return l.spec; })
      .def_prop_ro("query_scale", [](const ropekit::LayerRope& l) { return l.query_scale; })
      .def_ro("softmax_scale_factor", &ropekit::LayerRope::softmax_scale_factor)
      .def("__repr__", [](const ropekit::LayerRope& l) {
        return "LayerRope(layer_type=" + l.layer_type + ", " + (l.spec ? l.spec->describe() : std::string("no RoPE")) + ")";
      });
  nb::class_<ropekit::ModelRope>(m, "ModelRope", "Each layer's RoPE (a spec, or None for a NoPE layer).")
      .def_prop_ro("num_layers", &ropekit::ModelRope::num_layers)
      .def_prop_ro("layers", [](const ropekit::ModelRope& r) { return r.layers(); })
      .def("layer", [](const ropekit::ModelRope& r, PyInt i) { return r.layer(int_arg(i, "layer")); }, "index"_a)
      .def("__len__", &ropekit::ModelRope::num_layers)
      .def("spec", [](const ropekit::ModelRope& r, PyInt i) { return r.layer(int_arg(i, "layer")).spec; }, "layer"_a,
           "The spec of a layer, None for a NoPE layer.")
      .def_prop_ro("first_rope_layer", &ropekit::ModelRope::first_rope_layer);
  nb::class_<ropekit::HfConfigInfo>(m, "HfConfigInfo",
                                    "A config.json read by ropekit: spec (the first layer with RoPE), model (every "
                                    "layer), max_position_embeddings, model_type, head counts, notes.")
      .def_prop_ro("spec", [](const ropekit::HfConfigInfo& i) { return i.spec; })
      .def_prop_ro("model", [](const ropekit::HfConfigInfo& i) { return i.model; })
      .def_ro("max_position_embeddings", &ropekit::HfConfigInfo::max_position_embeddings)
      .def_ro("model_type", &ropekit::HfConfigInfo::model_type)
      .def_ro("num_attention_heads", &ropekit::HfConfigInfo::num_attention_heads)
      .def_ro("num_key_value_heads", &ropekit::HfConfigInfo::num_key_value_heads)
      .def_ro("notes", &ropekit::HfConfigInfo::notes);
  m.def("hf_config_info_json", [](std::string_view json) { return ropekit::hf_config_info_json(json); }, "json"_a);
  m.def("hf_config_info",
        [](const std::filesystem::path& path) {
          nb::gil_scoped_release release;
          return ropekit::hf_config_info(path);
        },
        "path"_a);

  // The GGUF metadata reader (llama.cpp files): a path, or the bytes of a file.
  nb::class_<ropekit::GgufRopeInfo>(m, "GgufRopeInfo",
                                    "The RoPE of a GGUF file as llama.cpp runs it: spec (full-attention layers), "
                                    "swa_spec (sliding-window layers, or None), architecture, context length, heads, notes.")
      .def_prop_ro("spec", [](const ropekit::GgufRopeInfo& g) { return g.spec; })
      .def_prop_ro("swa_spec", [](const ropekit::GgufRopeInfo& g) { return g.swa_spec; })
      .def_ro("architecture", &ropekit::GgufRopeInfo::architecture)
      .def_ro("version", &ropekit::GgufRopeInfo::version)
      .def_ro("context_length", &ropekit::GgufRopeInfo::context_length)
      .def_ro("head_count", &ropekit::GgufRopeInfo::head_count)
      .def_ro("head_count_kv", &ropekit::GgufRopeInfo::head_count_kv)
      .def_ro("sliding_window", &ropekit::GgufRopeInfo::sliding_window)
      .def_ro("dimension_sections", &ropekit::GgufRopeInfo::dimension_sections)
      .def_ro("notes", &ropekit::GgufRopeInfo::notes)
      .def("__repr__", [](const ropekit::GgufRopeInfo& g) {
        return "GgufRopeInfo(architecture=" + g.architecture + ", spec=" + g.spec.describe() + ")";
      });
  m.def("gguf_rope_info",
        [](const std::filesystem::path& path) {
          nb::gil_scoped_release release;
          return ropekit::gguf_rope_info(path);
        },
        "path"_a);
  m.def("spec_from_gguf",
        [](const std::filesystem::path& path) {
          nb::gil_scoped_release release;
          return ropekit::spec_from_gguf(path);
        },
        "path"_a);
  m.def("gguf_rope_info_bytes",
        [](nb::bytes data) { return ropekit::gguf_rope_info_bytes(std::string_view(data.c_str(), data.size())); },
        "data"_a);

  nb::class_<ropekit::RopeTable>(m, "RopeTable",
                                 "Immutable fp32 cos/sin rows for positions [0, size), the attention factor folded in. "
                                 "grown() and for_seq_len() return new tables; any thread may share one.",
                                 nb::is_weak_referenceable())
      .def("__init__",
           [](ropekit::RopeTable* self, const ropekit::RopeSpec& spec, PyInt positions, bool exact, PyInt seq_len) {
             const int64_t rows = int_arg(positions, "positions");
             const int64_t length = int_arg(seq_len, "seq_len");
             nb::gil_scoped_release release;
             new (self) ropekit::RopeTable(spec, rows, ropekit::TableOptions{exact, length});
           },
           "spec"_a, "positions"_a = 0, nb::kw_only(), "exact"_a = false, "seq_len"_a = 0)
      .def_prop_ro("spec", &ropekit::RopeTable::spec)
      .def_prop_ro("size", &ropekit::RopeTable::size)
      .def_prop_ro("pairs", &ropekit::RopeTable::pairs)
      .def_prop_ro("exact", [](const ropekit::RopeTable& t) { return t.options().exact; })
      .def_prop_ro("seq_len", &ropekit::RopeTable::seq_len)
      .def_prop_ro("attention_factor", &ropekit::RopeTable::attention_factor)
      .def_prop_ro("inv_freq", [](const ropekit::RopeTable& t) { return doubles(t.inv_freq()); })
      .def_prop_ro("xpos_log_zeta", [](const ropekit::RopeTable& t) { return doubles(t.xpos_log_zeta()); })
      .def("grown",
           [](const ropekit::RopeTable& t, PyInt n) {
             const int64_t rows = int_arg(n, "n");
             nb::gil_scoped_release release;
             return t.grown(rows);
           },
           "n"_a)
      .def("for_seq_len",
           [](const ropekit::RopeTable& t, PyInt seq_len) {
             const int64_t length = int_arg(seq_len, "seq_len");
             nb::gil_scoped_release release;
             return t.for_seq_len(length);
           },
           "seq_len"_a)
      .def("same_rows", [](const ropekit::RopeTable& a, const ropekit::RopeTable& b) { return a.rows().data() == b.rows().data() && a.size() == b.size(); },
           "other"_a, "True when both are the same table (one shares the other's rows).")
      .def(
          "table",
          [](const ropekit::RopeTable& t, PyInt rows_arg) {
            int64_t rows = int_arg(rows_arg, "rows");
            // A copy: rows [0, rows) of cos (first pairs columns) then sin, fp32, attention factor included.
            if (rows < 0) rows = t.size();
            if (rows > t.size())
              throw ropekit::Error("rows: expected <= " + std::to_string(t.size()) + " (the table's size), got " +
                                   std::to_string(rows));
            const auto r = t.rows();
            std::vector<float> out(r.begin(), r.begin() + rows * 2 * t.pairs());
            return to_numpy(std::move(out), {static_cast<size_t>(rows), static_cast<size_t>(2 * t.pairs())});
          },
          "rows"_a = -1)
      .def("__repr__", [](const ropekit::RopeTable& t) {
        return "RopeTable(" + t.spec().describe() + ", size=" + std::to_string(t.size()) +
               ", seq_len=" + std::to_string(t.seq_len()) + (t.options().exact ? ", exact" : "") + ")";
      });
  m.def("frequency_seq_len",
        [](const ropekit::RopeSpec& s, PyInt seq_len) { return ropekit::frequency_seq_len(s, int_arg(seq_len, "seq_len")); },
        "spec"_a, "seq_len"_a);

  m.def("required_table_size",
        [](nb::handle q, nb::handle k, PyInt start, nb::handle offsets, nb::handle ids, nb::handle cu_seqlens) {
          Operands ops = gather(q, k, nb::none(), nb::none(), int_arg(start, "start"), offsets, ids, cu_seqlens);
          return ropekit::required_table_size(ops.tensors, ops.positions);
        },
        "q"_a, "k"_a = nb::none(), nb::kw_only(), "start"_a = 0, "offsets"_a = nb::none(), "ids"_a = nb::none(),
        "cu_seqlens"_a = nb::none());

  m.def(
      "apply_explicit",
      [](nb::handle x, nb::handle cos, nb::handle sin, nb::handle out, nb::handle style, ropekit::Direction direction) {
        Operands ops;
        ops.held_in.reserve(4);
        ops.held_out.reserve(2);
        const TensorView xv = in_view(ops, x, "x", out.is_none());
        std::optional<TensorView> ov;
        if (!out.is_none()) ov = in_view(ops, out, "out", true);
        const float* tables[2];
        int64_t rows = 0, width = 0;
        const char* names[2] = {"cos", "sin"};
        nb::handle handles[2] = {cos, sin};
        for (int i = 0; i < 2; ++i) {
          ops.held_in.push_back(cast_array<InArray>(handles[i], names[i], "a float32 DLPack array (seq, width)"));
          const InArray& t = ops.held_in.back();
          const auto d = t.dtype();
          if (d.code != static_cast<uint8_t>(nb::dlpack::dtype_code::Float) || d.bits != 32 || d.lanes != 1)
            throw nb::type_error((std::string(names[i]) + ": expected dtype float32, got " + dtype_name(d)).c_str());
          if (t.ndim() != 2 || t.device_type() != nb::device::cpu::value || (t.shape(1) > 1 && t.stride(1) != 1) ||
              (t.shape(0) > 1 && t.stride(0) != static_cast<int64_t>(t.shape(1))))
            throw nb::value_error((std::string("ropekit: ") + names[i] + ": expected a contiguous 2-D (seq, width) array on the CPU").c_str());
          if (i == 1 && (static_cast<int64_t>(t.shape(0)) != rows || static_cast<int64_t>(t.shape(1)) != width))
            throw nb::value_error("ropekit: sin.shape: expected the shape of cos");
          rows = static_cast<int64_t>(t.shape(0));
          width = static_cast<int64_t>(t.shape(1));
          tables[i] = static_cast<const float*>(t.data());
        }
        const ropekit::ExplicitCoefficients co{tables[0], tables[1], rows, width};
        const ropekit::Style st = style_arg(style);
        nb::gil_scoped_release release;
        ropekit::apply_explicit(xv, ov, co, st, direction);
      },
      "x"_a, "cos"_a, "sin"_a, "out"_a = nb::none(), nb::kw_only(), "style"_a = ropekit::Style::half,
      "direction"_a = ropekit::Direction::forward,
      "Rotate x (B, S, H, D) or (T, H, D) with per-(seq, element) float32 cos/sin tables (CPU).");

  m.def(
      "rotary_embedding_with_kv_cache",
      [](nb::handle positions, nb::handle query, nb::handle key, nb::handle value, PyInt head_size,
         nb::handle cos_sin_cache, bool is_neox, nb::handle slot_mapping, nb::handle k_cache, nb::handle v_cache,
         const std::string& layout, const std::string& kv_cache_dtype, std::vector<float> k_scale,
         std::vector<float> v_scale, PyInt rope_dim_offset, PyInt num_threads,
         std::optional<std::vector<int64_t>> mrope_section, bool mrope_interleaved) {
        const int64_t size = int_arg(head_size, "head_size");
        const int64_t offset = int_arg(rope_dim_offset, "rope_dim_offset");
        ropekit::EngineOptions options = engine_options(num_threads, mrope_section, mrope_interleaved);
        const std::optional<DType> fp8 = fp8_arg(kv_cache_dtype);
        ropekit::PagedKvCache cache;
        cache.layout = layout_arg(layout);
        Operands ops;
        ops.held_in.reserve(5);
        ops.held_out.reserve(3);
        const ropekit::IndexView pos = index_arg(ops, positions, "positions");
        const ropekit::IndexView slots = index_arg(ops, slot_mapping, "slot_mapping");
        const ropekit::CosSinCacheView table = cache_arg(ops, cos_sin_cache);
        const TensorView q = in_view(ops, query, "query", true);
        const TensorView k = in_view(ops, key, "key", false);
        std::optional<TensorView> v;
        if (!value.is_none()) v = in_view(ops, value, "value", false);
        cache.k_cache = cache_tensor_arg(ops, k_cache, "k_cache", fp8);
        if (!v_cache.is_none()) cache.v_cache = cache_tensor_arg(ops, v_cache, "v_cache", fp8);
        cache.k_scale = k_scale;
        cache.v_scale = v_scale;
        nb::gil_scoped_release release;
        ropekit::rotary_embedding_with_kv_cache(pos, q, k, v, size, table, is_neox, slots, cache, offset, options);
      },
      "positions"_a, "query"_a, "key"_a, "value"_a.none(), "head_size"_a, "cos_sin_cache"_a, "is_neox"_a,
      "slot_mapping"_a, "k_cache"_a, "v_cache"_a.none(), nb::kw_only(), "layout"_a = "NHD", "kv_cache_dtype"_a = "auto",
      "k_scale"_a = std::vector<float>{}, "v_scale"_a = std::vector<float>{}, "rope_dim_offset"_a = 0,
      "num_threads"_a = 0, "mrope_section"_a = nb::none(), "mrope_interleaved"_a = false,
      "Rotate query in place and write key rotated and value into a paged KV cache at slot_mapping.");

  m.def(
      "rerotate_kv_cache",
      [](nb::handle slots, nb::handle from_positions, nb::handle to_positions, nb::handle cos_sin_cache, bool is_neox,
         nb::handle k_cache, const std::string& layout, const std::string& kv_cache_dtype, std::vector<float> k_scale,
         PyInt rope_dim_offset, PyInt num_threads) {
        const ropekit::EngineOptions options = engine_options(num_threads, std::nullopt, false);
        const std::optional<DType> fp8 = fp8_arg(kv_cache_dtype);
        const ropekit::KvLayout kv_layout = layout_arg(layout);
        const int64_t offset = int_arg(rope_dim_offset, "rope_dim_offset");
        Operands ops;
        ops.held_in.reserve(4);
        ops.held_out.reserve(1);
        const ropekit::IndexView s = index_arg(ops, slots, "slots");
        const ropekit::IndexView from = index_arg(ops, from_positions, "from_positions");
        const ropekit::IndexView to = index_arg(ops, to_positions, "to_positions");
        const ropekit::CosSinCacheView table = cache_arg(ops, cos_sin_cache);
        const TensorView kc = cache_tensor_arg(ops, k_cache, "k_cache", fp8);
        nb::gil_scoped_release release;
        ropekit::rerotate_kv_cache(s, from, to, table, is_neox, kc, kv_layout, k_scale, offset, options);
      },
      "slots"_a, "from_positions"_a, "to_positions"_a, "cos_sin_cache"_a, "is_neox"_a, "k_cache"_a, nb::kw_only(),
      "layout"_a = "NHD", "kv_cache_dtype"_a = "auto", "k_scale"_a = std::vector<float>{}, "rope_dim_offset"_a = 0,
      "num_threads"_a = 0, "Turn the cached keys at slots from from_positions to to_positions, in place.");

  m.def(
      "paged_kv_slots",
      [](nb::handle batch_indices, nb::handle kv_positions, nb::handle kv_indices, nb::handle kv_indptr,
         nb::handle kv_last_page_len, PyInt page_size, PyInt num_pages) {
        Operands ops;
        ops.held_in.reserve(5);
        const auto slots = ropekit::paged_kv_slots(
            index_arg(ops, batch_indices, "batch_indices"), index_arg(ops, kv_positions, "kv_positions"),
            index_arg(ops, kv_indices, "kv_indices"), index_arg(ops, kv_indptr, "kv_indptr"),
            index_arg(ops, kv_last_page_len, "kv_last_page_len"), int_arg(page_size, "page_size"),
            int_arg(num_pages, "num_pages"));
        const size_t n = slots.size();
        return to_numpy(slots, {n});
      },
      "batch_indices"_a, "kv_positions"_a, "kv_indices"_a, "kv_indptr"_a, "kv_last_page_len"_a, "page_size"_a,
      "num_pages"_a, "FlashInfer's page table as a slot mapping (int64): page * page_size + position % page_size.");

  m.def(
      "rotary_embedding",
      [](nb::handle positions, nb::handle query, nb::handle key, PyInt head_size, nb::handle cos_sin_cache,
         bool is_neox, PyInt rope_dim_offset, bool inverse, PyInt num_threads, uintptr_t stream,
         std::optional<std::vector<int64_t>> mrope_section, bool mrope_interleaved) {
        const int64_t size = int_arg(head_size, "head_size");
        const int64_t offset = int_arg(rope_dim_offset, "rope_dim_offset");
        ropekit::EngineOptions options = engine_options(num_threads, mrope_section, mrope_interleaved);
        options.stream = reinterpret_cast<void*>(stream);
        Operands ops;
        ops.held_in.reserve(2);
        ops.held_out.reserve(2);
        const ropekit::IndexView pos = index_arg(ops, positions, "positions");
        const ropekit::CosSinCacheView cache = cache_arg(ops, cos_sin_cache);
        const TensorView q = in_view(ops, query, "query", true);
        std::optional<TensorView> k;
        if (!key.is_none()) k = in_view(ops, key, "key", true);
        nb::gil_scoped_release release;
        ropekit::rotary_embedding(pos, q, k, size, cache, is_neox, offset, inverse, options);
      },
      "positions"_a, "query"_a, "key"_a.none(), "head_size"_a, "cos_sin_cache"_a, "is_neox"_a, "rope_dim_offset"_a = 0,
      "inverse"_a = false, nb::kw_only(), "num_threads"_a = 0, "stream"_a = 0, "mrope_section"_a = nb::none(),
      "mrope_interleaved"_a = false,
      "Rotate query and key in place by position with a caller-owned [max_position, rot_dim] cos/sin cache.");

  m.def(
      "cuda_check_errors",
      [](uintptr_t stream, bool wait) {
        nb::gil_scoped_release release;
        if (wait) ropekit::cuda_check_errors(reinterpret_cast<void*>(stream));
        else ropekit::cuda_check_errors();
      },
      "stream"_a = 0, "wait"_a = false,
      "Raise the first invalid device-resident position a finished kernel found (wait: synchronise stream first).");

  m.def(
      "mrope_index",
      [](InArray token_types, PyInt batch, PyInt seq, const std::vector<std::vector<int64_t>>& image_grids,
         const std::vector<std::vector<int64_t>>& video_grids, PyInt spatial_merge_size, bool split_video_frames,
         double tokens_per_second, std::optional<InArray> attention_mask, const std::vector<double>& seconds_per_grid) {
        ropekit::MRopeIndexOptions o;
        o.spatial_merge_size = int_arg(spatial_merge_size, "spatial_merge_size");
        o.split_video_frames = split_video_frames;
        o.tokens_per_second = tokens_per_second;
        const int64_t b = int_arg(batch, "batch");
        const int64_t s = int_arg(seq, "seq");
        const ropekit::MRopeIndex index =
            ropekit::mrope_index(index_of(token_types, "token_types"), b, s, grids(image_grids, "image_grid_thw"),
                                 grids(video_grids, "video_grid_thw"), o,
                                 attention_mask ? index_of(*attention_mask, "attention_mask") : ropekit::IndexView{},
                                 seconds_per_grid);
        return nb::make_tuple(to_numpy(index.positions, {3, static_cast<size_t>(b), static_cast<size_t>(s)}),
                              to_numpy(index.deltas, {static_cast<size_t>(b), 1}));
      },
      "token_types"_a, "batch"_a, "seq"_a, "image_grids"_a, "video_grids"_a, "spatial_merge_size"_a,
      "split_video_frames"_a, "tokens_per_second"_a, "attention_mask"_a.none(), "seconds_per_grid"_a,
      "M-RoPE positions (3, B, S) and rope deltas (B, 1) of a multimodal prompt (see ropekit.mrope_index).");

  m.def(
      "vision_position_ids",
      [](const std::vector<std::vector<int64_t>>& rows, PyInt spatial_merge_size, bool columns_first, PyInt start,
         bool cls_token) {
        ropekit::VisionPositionOptions o;
        o.spatial_merge_size = int_arg(spatial_merge_size, "spatial_merge_size");
        o.columns_first = columns_first;
        o.start = int_arg(start, "start");
        o.cls_token = cls_token;
        std::vector<int64_t> ids = ropekit::vision_position_ids(grids(rows, "grid_thw"), o);
        const size_t n = ids.size() / 2;
        return to_numpy(std::move(ids), {2, n});
      },
      "grids"_a, "spatial_merge_size"_a, "columns_first"_a, "start"_a, "cls_token"_a,
      "Axis-major (2, N) positions of vision patches (see ropekit.vision_position_ids).");

  m.def(
      "cos_sin_cache",
      [](const ropekit::RopeSpec& spec, PyInt max_position, bool exact, PyInt seq_len) {
        const int64_t rows = int_arg(max_position, "max_position");
        const int64_t length = int_arg(seq_len, "seq_len");
        std::vector<float> cache;
        {
          nb::gil_scoped_release release;
          cache = ropekit::cos_sin_cache(spec, rows, ropekit::TableOptions{exact, length});
        }
        return to_numpy(std::move(cache), {static_cast<size_t>(rows), static_cast<size_t>(spec.rotary_dim())});
      },
      "spec"_a, "max_position"_a, nb::kw_only(), "exact"_a = false, "seq_len"_a = 0,
      "The engine cos/sin cache of spec: float32 [max_position, rotary_dim], cos half then sin half.");

  m.def(
      "apply",
      [](nb::handle q, nb::handle k, nb::handle q_out, nb::handle k_out, const ropekit::RopeTable* table,
         const ropekit::RopeSpec* spec, PyInt start, nb::handle offsets, nb::handle ids, nb::handle cu_seqlens,
         ropekit::Direction direction, double xpos_center, bool compute_sincos, PyInt num_threads, uintptr_t stream,
         std::optional<ropekit::QueryScale> query_scale) {
        if ((table == nullptr) == (spec == nullptr))
          throw nb::value_error("ropekit: apply: give exactly one of table= or spec=");
        const int64_t first = int_arg(start, "start");
        const int threads = static_cast<int>(int_arg(num_threads, "num_threads", 0, std::numeric_limits<int>::max()));
        Operands ops = gather(q, k, q_out, k_out, first, offsets, ids, cu_seqlens);
        const auto options = options_of(direction, xpos_center, compute_sincos, threads, stream, query_scale);
        if (table != nullptr) {
          // The table is immutable: positions past its rows are computed in the kernel.
          nb::gil_scoped_release release;
          ropekit::apply_rope(ops.tensors, ops.positions, *table, options);
        } else {
          nb::gil_scoped_release release;
          ropekit::apply_rope(ops.tensors, ops.positions, *spec, options);
        }
      },
      "q"_a, "k"_a = nb::none(), "q_out"_a = nb::none(), "k_out"_a = nb::none(), nb::kw_only(),
      "table"_a = nb::none(), "spec"_a = nb::none(), "start"_a = 0, "offsets"_a = nb::none(), "ids"_a = nb::none(),
      "cu_seqlens"_a = nb::none(), "direction"_a = ropekit::Direction::forward, "xpos_center"_a = 0.0,
      "compute_sincos"_a = false, "num_threads"_a = 0, "stream"_a = 0, "query_scale"_a = nb::none(),
      "Rotate q (and k) with a table or a spec. Without q_out/k_out the operands are rotated in place.");

  m.def(
      "apply_query_scale",
      [](nb::handle q, nb::handle q_out, const ropekit::QueryScale& query_scale, PyInt start, nb::handle offsets,
         nb::handle ids, nb::handle cu_seqlens, ropekit::Direction direction, PyInt num_threads, uintptr_t stream) {
        const int threads = static_cast<int>(int_arg(num_threads, "num_threads", 0, std::numeric_limits<int>::max()));
        Operands ops = gather(q, nb::none(), q_out, nb::none(), int_arg(start, "start"), offsets, ids, cu_seqlens);
        const auto options = options_of(direction, 0.0, false, threads, stream);
        nb::gil_scoped_release release;
        ropekit::apply_query_scale(ops.tensors.q, ops.positions, query_scale, options, ops.tensors.q_out);
      },
      "q"_a, "q_out"_a = nb::none(), nb::kw_only(), "query_scale"_a, "start"_a = 0, "offsets"_a = nb::none(),
      "ids"_a = nb::none(), "cu_seqlens"_a = nb::none(), "direction"_a = ropekit::Direction::forward,
      "num_threads"_a = 0, "stream"_a = 0,
      "q (every channel, no rotation) times query_scale.at(position); without q_out in place.");

  ropekit_python::bind_torch_api(m);
}
