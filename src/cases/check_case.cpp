#include "check_case.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <optional>
#include <random>
#include <sstream>

#include "apply_call.hpp"
#include "hf_formulas.hpp"
#include "reference64.hpp"
#include "ropekit/table.hpp"
#include "table_data.hpp"

namespace ropekit::cases {
namespace {

size_t element_size(DType d) { return d == DType::f64 ? 8 : d == DType::f32 ? 4 : 2; }

// Stored values read as float64, from the formats' definitions (independent of src/half_float.hpp).
double decode(const unsigned char* p, DType d) {
  if (d == DType::f64) return std::bit_cast<double>(*reinterpret_cast<const uint64_t*>(p));
  if (d == DType::f32) return std::bit_cast<float>(*reinterpret_cast<const uint32_t*>(p));
  uint16_t h;
  std::memcpy(&h, p, 2);
  if (d == DType::bf16) return std::bit_cast<float>(static_cast<uint32_t>(h) << 16);
  const double sign = (h & 0x8000u) ? -1.0 : 1.0;
  const int exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  if (exponent == 0x1f) return mantissa ? NAN : sign * INFINITY;
  if (exponent == 0) return sign * std::ldexp(mantissa, -24);
  return sign * std::ldexp(1024 + mantissa, exponent - 25);
}

// A random value of magnitude in [1/32, 2), written as its bits: never zero, so a skipped element
// cannot pass as a rotated zero.
void store_random(unsigned char* p, DType d, std::mt19937_64& rng) {
  const uint64_t r = rng();
  const bool negative = r & 1;
  const double magnitude = std::ldexp(1.0 + static_cast<double>(r >> 11) * 0x1p-53, -static_cast<int>((r >> 1) % 6));
  const double v = negative ? -magnitude : magnitude;
  if (d == DType::f64) std::memcpy(p, &v, 8);
  const auto f = static_cast<float>(v);
  if (d == DType::f32) std::memcpy(p, &f, 4);
  if (d == DType::bf16) {
    const auto h = static_cast<uint16_t>(std::bit_cast<uint32_t>(f) >> 16);
    std::memcpy(p, &h, 2);
  }
  if (d == DType::f16) {
    const auto h = static_cast<uint16_t>((negative ? 0x8000u : 0u) | ((15u - (r >> 1) % 6) << 10) | ((r >> 20) & 0x3ffu));
    std::memcpy(p, &h, 2);
  }
}

// One tensor's storage and the element offset of logical (b, s, h, d).
struct Tensor {
  DType dtype;
  int64_t batch, seq, heads, dim;
  int64_t stride[3]{};  // b, s, h
  std::vector<unsigned char> bytes;

  Tensor(DType t, Layout layout, int64_t b, int64_t s, int64_t h, int64_t d, int64_t pad)
      : dtype(t), batch(b), seq(s), heads(h), dim(d) {
    const int64_t row = d + pad;
    if (layout == Layout::bhsd) {
      stride[1] = row, stride[2] = s * row, stride[0] = h * s * row;
    } else {
      stride[2] = row, stride[1] = h * row, stride[0] = s * h * row;
    }
    bytes.assign(static_cast<size_t>(b * s * h * row) * element_size(t), 0);
  }
  int64_t offset(int64_t b, int64_t s, int64_t h) const { return b * stride[0] + s * stride[1] + h * stride[2]; }
  unsigned char* at(int64_t element) { return bytes.data() + static_cast<size_t>(element) * element_size(dtype); }
  const unsigned char* at(int64_t element) const {
    return bytes.data() + static_cast<size_t>(element) * element_size(dtype);
  }
  TensorView view(bool rank3) {
    TensorView v;
    v.data = bytes.data();
    v.dtype = dtype;
    if (rank3) {
      v.rank = 3;
      v.shape = {seq, heads, dim, 0};
      v.strides = {stride[1], stride[2], 1, 0};
    } else {
      v.rank = 4;
      v.shape = {batch, seq, heads, dim};
      v.strides = {stride[0], stride[1], stride[2], 1};
    }
    return v;
  }
};

// The positions of every token (b-major) and the arrays the call reads.
struct PositionData {
  std::vector<int64_t> values64, cu64, per_token;  // per_token: axis 0
  std::vector<int64_t> per_token_axis[3];          // 3-axis ids (M-RoPE)
  std::vector<int32_t> values32, cu32;
  Positions positions;
};

PositionData make_positions(const Case& c, std::mt19937_64& rng) {
  PositionData pd;
  auto draw = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  const int64_t low = c.far_positions ? c.far_start : 0, high = low + 60;
  const int64_t tokens = c.batch * c.seq;
  const bool index32 = c.positions == PositionMode::ids32 || draw(0, 1) == 1;
  auto index_view = [&](std::vector<int64_t>& v64, std::vector<int32_t>& v32) {
    v32.assign(v64.begin(), v64.end());
    return index32 ? IndexView(v32.data(), static_cast<int64_t>(v32.size()))
                   : IndexView(v64.data(), static_cast<int64_t>(v64.size()));
  };
  switch (c.positions) {
    case PositionMode::offset: {
      const int64_t start = draw(low, high);
      pd.positions = Positions::from_offset(start);
      for (int64_t t = 0; t < tokens; ++t) pd.per_token.push_back(start + t % c.seq);
      break;
    }
    case PositionMode::per_sequence:
      for (int64_t b = 0; b < c.batch; ++b) pd.values64.push_back(draw(low, high));
      pd.positions = Positions::per_sequence(index_view(pd.values64, pd.values32));
      for (int64_t t = 0; t < tokens; ++t) pd.per_token.push_back(pd.values64[static_cast<size_t>(t / c.seq)] + t % c.seq);
      break;
    case PositionMode::ids32:
    case PositionMode::ids64:
      if (const int64_t axes = RopeSpec(c.spec).position_axes(); axes > 1) {
        // Axis-major; about a third of the tokens with equal axes (M-RoPE's text tokens). The third
        // axis of 2-axis ids repeats the first for the reference.
        for (auto& axis : pd.per_token_axis) axis.resize(static_cast<size_t>(tokens));
        for (size_t t = 0; t < static_cast<size_t>(tokens); ++t) {
          const bool equal = draw(0, 2) == 0;
          const int64_t first = draw(low, high);
          pd.per_token_axis[0][t] = first;
          for (size_t a = 1; a < 3; ++a)
            pd.per_token_axis[a][t] = equal || static_cast<int64_t>(a) >= axes ? first : draw(low, high);
        }
        for (int64_t a = 0; a < axes; ++a)
          pd.values64.insert(pd.values64.end(), pd.per_token_axis[a].begin(), pd.per_token_axis[a].end());
        pd.positions = Positions::token_ids(index_view(pd.values64, pd.values32), axes);
        pd.per_token = pd.per_token_axis[0];
        break;
      }
      for (int64_t t = 0; t < tokens; ++t) pd.values64.push_back(draw(low, high));
      pd.positions = Positions::token_ids(index_view(pd.values64, pd.values32));
      pd.per_token = pd.values64;
      break;
    case PositionMode::packed:
    case PositionMode::packed_offsets: {
      const int64_t sequences = draw(1, 4);  // some may be empty
      pd.cu64 = {0, c.seq};
      for (int64_t i = 1; i < sequences; ++i) pd.cu64.push_back(draw(0, c.seq));
      std::sort(pd.cu64.begin(), pd.cu64.end());
      const bool offsets = c.positions == PositionMode::packed_offsets;
      if (offsets)
        for (int64_t i = 0; i < sequences; ++i) pd.values64.push_back(draw(low, high));
      const IndexView cu = index_view(pd.cu64, pd.cu32);
      pd.positions = Positions::packed(cu, offsets ? index_view(pd.values64, pd.values32) : IndexView{});
      for (int64_t i = 0; i < sequences; ++i)
        for (int64_t t = pd.cu64[static_cast<size_t>(i)]; t < pd.cu64[static_cast<size_t>(i) + 1]; ++t)
          pd.per_token.push_back(t - pd.cu64[static_cast<size_t>(i)] + (offsets ? pd.values64[static_cast<size_t>(i)] : 0));
      break;
    }
  }
  return pd;
}

ref64::RefDirection ref_direction(Direction d) {
  return d == Direction::forward    ? ref64::RefDirection::forward
         : d == Direction::backward ? ref64::RefDirection::backward
                                    : ref64::RefDirection::inverse;
}

}  // namespace

double tolerance(DType dtype) {
  switch (dtype) {
    case DType::f32: return 1e-5;
    case DType::f16: return 1e-3;
    case DType::bf16: return 8e-3;
    case DType::f64: return 1e-6;  // double arithmetic with the table's fp32 cos/sin
    case DType::f8_e4m3:
    case DType::f8_e5m2: break;  // not a q / k dtype
  }
  return 0;
}

CaseResult check_case(const Case& c, const Backend& backend) {
  CaseResult result;
  if (c.dtype == DType::f64 && !backend.f64) return result;
  result.ran = true;
  std::mt19937_64 rng(c.seed ^ 0x9e3779b97f4a7c15ull);
  const RopeSpec spec(c.spec);
  PositionData pd = make_positions(c, rng);
  const bool rank3 = c.layout == Layout::thd;
  int64_t pad = c.layout == Layout::padded || (rank3 && rng() % 2) ? 1 + static_cast<int64_t>(rng() % 4) : 0;
  int64_t out_pad = c.out_layout == Layout::padded ? 1 + static_cast<int64_t>(rng() % 4) : pad;
  if (c.row_padding >= 0) pad = out_pad = c.row_padding;
  auto make = [&](int64_t heads, Layout layout, int64_t p) {
    return Tensor(c.dtype, layout, c.batch, c.seq, heads, c.spec.head_dim, p);
  };
  Tensor q = make(c.q_heads, c.layout, pad), k = make(std::max<int64_t>(c.k_heads, 1), c.layout, pad);
  for (Tensor* t : {&q, &k})
    for (size_t i = 0; i < t->bytes.size(); i += element_size(c.dtype)) store_random(t->bytes.data() + i, c.dtype, rng);
  std::optional<Tensor> q_out, k_out;
  if (!c.in_place) {
    q_out.emplace(make(c.q_heads, c.out_layout, out_pad));
    k_out.emplace(make(k.heads, c.out_layout, out_pad));
    std::fill(q_out->bytes.begin(), q_out->bytes.end(), 0xff);  // NaN in every dtype
    std::fill(k_out->bytes.begin(), k_out->bytes.end(), 0xff);
  }
  const Tensor q_before = q, k_before = k;
  const Tensor q_out_before = c.in_place ? q : *q_out, k_out_before = c.in_place ? k : *k_out;

  RopeTensors tensors{q.view(rank3), std::nullopt, std::nullopt, std::nullopt};
  if (c.k_heads > 0) tensors.k = k.view(rank3);
  if (!c.in_place) {
    tensors.q_out = q_out->view(rank3);
    if (c.k_heads > 0) tensors.k_out = k_out->view(rank3);
  }
  int64_t lowest = INT64_MAX, needed = 0;
  for (int64_t p : pd.per_token) lowest = std::min(lowest, p), needed = std::max(needed, p + 1);
  for (const auto& axis : pd.per_token_axis)
    for (int64_t p : axis) lowest = std::min(lowest, p), needed = std::max(needed, p + 1);
  detail::CheckedCall call = detail::check_call(tensors, pd.positions, spec, {});
  detail::RopeParams& params = call.params;
  params.direction = c.direction;
  params.num_threads = c.num_threads;
  params.xpos_center =
      c.xpos && !pd.per_token.empty() ? static_cast<double>(lowest + needed - 1) / 2.0 + c.xpos_center_shift : 0.0;
  if (c.query_scale) {
    params.has_query_scale = true;
    params.query_scale = *c.query_scale;
  }
  const bool compute = c.cos_sin == CosSin::compute || c.cos_sin == CosSin::compute_exact;
  // Rows up to the largest position, or to the middle of the positions (past_rows); one row past
  // kMaxCaseRows (positions near 10^6 read no rows).
  constexpr int64_t kMaxCaseRows = int64_t{1} << 18;
  const int64_t rows = needed > kMaxCaseRows            ? 1
                       : c.cos_sin == CosSin::past_rows ? std::max<int64_t>(lowest + (needed - lowest) / 2, 1)
                                                        : needed;
  const bool exact = c.cos_sin == CosSin::compute_exact || c.exact_rows;
  const RopeTable table(spec, rows, ropekit::TableOptions{exact});
  detail::use_table(params, detail::TableAccess::data(table), compute);

  std::vector<HostRegion> regions = {{q.bytes.data(), q.bytes.size()},
                                     {k.bytes.data(), k.bytes.size()}};
  if (!c.in_place) {
    regions.push_back({q_out->bytes.data(), q_out->bytes.size()});
    regions.push_back({k_out->bytes.data(), k_out->bytes.size()});
  }
  for (auto* v : {&pd.values64, &pd.cu64})
    if (!v->empty()) regions.push_back({v->data(), v->size() * 8});
  for (auto* v : {&pd.values32, &pd.cu32})
    if (!v->empty()) regions.push_back({v->data(), v->size() * 4});
  // The scalar loop's outputs first (then the inputs back as they were), to compare with.
  std::optional<Tensor> q_scalar, k_scalar;
  if (backend.agrees_with_scalar) {
    detail::apply_cpu_scalar(params);
    Tensor& q_written = c.in_place ? q : *q_out;
    Tensor& k_written = c.in_place ? k : *k_out;
    q_scalar = q_written, k_scalar = k_written;
    q_written.bytes = q_out_before.bytes, k_written.bytes = k_out_before.bytes;
  }
  try {
    if (backend.entry == Backend::Entry::params) {
      backend.run(params, regions);
    } else {
      ApplyOptions options;
      options.direction = c.direction;
      options.num_threads = c.num_threads;
      options.compute_sincos = compute;
      options.xpos_center = params.xpos_center;
      options.query_scale = c.query_scale;
      if (backend.entry == Backend::Entry::apply_rope_table) apply_rope(tensors, pd.positions, table, options);
      else apply_rope(tensors, pd.positions, spec, options);
    }
  } catch (const std::exception& e) {
    result.failures = 1;
    result.first_failure = std::string("threw: ") + e.what();
    return result;
  }

  ref64::RefRope ref;
  ref.head_dim = spec.head_dim();
  ref.rotary_dim = spec.rotary_dim();
  ref.style = c.style == Style::half ? ref64::RefStyle::half : ref64::RefStyle::interleaved;
  const bool spec_call = backend.entry == Backend::Entry::apply_rope_spec;
  ref.inv_freq = hf::inv_freq(spec, spec_call ? needed : table.seq_len());
  ref.attention = hf::attention(spec);
  if (spec.xpos()) {
    ref.xpos = true;
    ref.xpos_zeta = hf::xpos_zeta(spec.rotary_dim(), spec.xpos()->gamma);
    ref.xpos_scale_base = spec.xpos()->scale_base;
    ref.xpos_center = params.xpos_center;
  }
  ref.float32_angles = !exact || spec_call;  // the spec call's table is not exact
  if (spec.mrope() && pd.positions.axes == 3) ref.pair_axis = hf::mrope_pair_axis(*spec.mrope(), spec.pairs());
  if (spec.axial() && pd.positions.axes == 2) {  // HF's cat([freq_h, freq_w]): the halves on axes 0 and 1
    ref.pair_axis.assign(static_cast<size_t>(spec.pairs() / 2), 0);
    ref.pair_axis.resize(static_cast<size_t>(spec.pairs()), 1);
  }

  const double tol = tolerance(c.dtype);
  const int64_t pairs = ref.rotary_dim / 2;
  const size_t es = element_size(c.dtype);
  auto fail = [&](const std::string& what) {
    if (result.failures++ == 0) result.first_failure = what;
  };
  // One unit in the last place of the storage format, relative (and absolute near zero).
  const double ulp = c.dtype == DType::f64 ? 0x1p-52 : c.dtype == DType::f32 ? 0x1p-23 : c.dtype == DType::f16 ? 0x1p-10 : 0x1p-7;
  auto check_operand = [&](const Tensor& in, const Tensor& out, const Tensor& out_initial, const std::optional<Tensor>& scalar,
                           double sign, const char* name) {
    std::vector<char> visited(out.bytes.size() / es, 0);
    std::vector<double> x(static_cast<size_t>(in.dim));
    for (int64_t b = 0; b < in.batch; ++b)
      for (int64_t s = 0; s < in.seq; ++s)
        for (int64_t h = 0; h < in.heads; ++h) {
          const auto token = static_cast<size_t>(b * in.seq + s);
          const int64_t position = pd.per_token[token];
          int64_t at[3] = {position, position, position};
          if (pd.positions.axes > 1)
            for (int a = 0; a < 3; ++a) at[a] = pd.per_token_axis[a][token];
          for (int64_t d = 0; d < in.dim; ++d) x[static_cast<size_t>(d)] = decode(in.at(in.offset(b, s, h) + d), c.dtype);
          auto y = ref64::reference_row(ref, x, at, sign, ref_direction(c.direction));
          const bool scaled = sign > 0 && c.query_scale;
          if (scaled) {
            const double t = ref64::query_scale(c.query_scale->factor, c.query_scale->beta, c.query_scale->length,
                                                c.query_scale->shift, position);
            for (double& v : y) v = c.direction == Direction::inverse ? v / t : v * t;
          }
          for (int64_t d = 0; d < in.dim; ++d) {
            const int64_t e = out.offset(b, s, h) + d;
            visited[static_cast<size_t>(e)] = 1;
            auto where = [&] {  // built only for a failure: formatting every element costs more than checking it
              std::ostringstream o;
              o << name << "[b=" << b << " s=" << s << " h=" << h << " d=" << d << "] position " << position;
              if (pd.positions.axes > 1) o << " (axes " << at[0] << ", " << at[1] << ", " << at[2] << ")";
              o << ": ";
              return o.str();
            };
            if (scalar) {
              const double got = decode(out.at(e), c.dtype), loop = decode(scalar->at(e), c.dtype);
              if (!(std::fabs(got - loop) <= ulp * (std::fabs(loop) + 1e-3)))
                fail(where() + "got " + std::to_string(got) + ", the scalar loop " + std::to_string(loop));
            }
            if (d >= ref.rotary_dim) {
              if (scaled) {  // the pass-through channels are scaled too: one rounding of x t
                const double got = decode(out.at(e), c.dtype), want = y[static_cast<size_t>(d)];
                if (!(std::fabs(got - want) <= tol * std::fabs(want))) {
                  fail(where() + "pass-through got " + std::to_string(got) + ", reference " + std::to_string(want));
                }
              } else if (std::memcmp(out.at(e), in.at(in.offset(b, s, h) + d), es) != 0) {
                fail(where() + "pass-through element changed");
              }
              continue;
            }
            const int64_t i = c.style == Style::half ? d % pairs : d / 2;
            const size_t ia = static_cast<size_t>(c.style == Style::half ? i : 2 * i);
            const size_t ib = static_cast<size_t>(c.style == Style::half ? i + pairs : 2 * i + 1);
            const double got = decode(out.at(e), c.dtype), want = y[static_cast<size_t>(d)];
            const double ratio = std::fabs(got - want) / (tol * std::hypot(y[ia], y[ib]));
            if (!(ratio <= 1.0)) {  // NaN fails
              std::ostringstream what;
              what << where() << "got " << got << ", reference " << want << " (" << ratio << " x tolerance)";
              fail(what.str());
            }
            result.worst_error = std::isnan(ratio) || std::isnan(result.worst_error) ? NAN : std::max(result.worst_error, ratio);
          }
        }
    for (size_t e = 0; e < visited.size(); ++e)
      if (!visited[e] && std::memcmp(out.at(static_cast<int64_t>(e)), out_initial.at(static_cast<int64_t>(e)), es) != 0)
        fail(std::string(name) + ": element " + std::to_string(e) + " outside the view written");
  };
  check_operand(q_before, c.in_place ? q : *q_out, q_out_before, q_scalar, 1.0, "q");
  if (c.k_heads > 0) {
    check_operand(k_before, c.in_place ? k : *k_out, k_out_before, k_scalar, -1.0, "k");
  } else if ((c.in_place ? k.bytes : k_out->bytes) != k_out_before.bytes) {
    fail("k written without k in the call");
  }
  if (!c.in_place && (q.bytes != q_before.bytes || k.bytes != k_before.bytes)) fail("out-of-place inputs changed");
  result.passed = result.failures == 0;
  return result;
}

TableResult run_table(const std::vector<Case>& table, const Backend& backend) {
  TableResult r;
  for (const Case& c : table) {
    CaseResult one;
    try {
      one = check_case(c, backend);
    } catch (const std::exception& e) {  // a case the library refuses is a failure too
      one.ran = true;
      one.first_failure = std::string("threw: ") + e.what();
    }
    if (!one.ran) {
      ++r.skipped;
      continue;
    }
    ++r.ran;
    if (!one.passed) {
      ++r.failed;
      r.failures.push_back(backend.name + ": " + c.describe() + ": " + one.first_failure);
    }
  }
  return r;
}

Backend public_api(Backend::Entry entry) {
  Backend b{entry == Backend::Entry::apply_rope_table ? "apply_rope(table)" : "apply_rope(spec)", true, {}};
  b.entry = entry;
  return b;
}

Backend relocated(std::string name, bool f64, Memory memory, std::function<void(const detail::RopeParams&)> run) {
  auto body = [memory = std::move(memory), run = std::move(run)](const detail::RopeParams& host,
                                                                 std::span<const HostRegion> regions) {
    struct Copy {
      void* data = nullptr;
      const Memory* memory = nullptr;
      ~Copy() {
        if (data) memory->release(data);
      }
    };
    std::vector<Copy> copies(regions.size());
    for (size_t i = 0; i < regions.size(); ++i) {
      copies[i].memory = &memory;
      copies[i].data = memory.allocate(std::max<size_t>(regions[i].bytes, 1));
      memory.upload(copies[i].data, regions[i].data, regions[i].bytes);
    }
    auto move = [&](const void* ptr) -> void* {
      const auto* p = static_cast<const unsigned char*>(ptr);
      for (size_t i = 0; i < regions.size(); ++i) {
        const auto* begin = static_cast<const unsigned char*>(regions[i].data);
        if (p >= begin && p < begin + regions[i].bytes) return static_cast<unsigned char*>(copies[i].data) + (p - begin);
      }
      return const_cast<void*>(ptr);  // not the checker's memory (null, the table's)
    };
    detail::RopeParams p = host;
    p.device = memory.device;
    for (detail::Operand* op : {&p.q, &p.k}) {
      op->in = move(op->in);
      op->out = move(op->out);
    }
    for (IndexView* v : {&p.positions.values, &p.positions.cu_seqlens}) {
      v->data = move(v->data);
      v->device = memory.device;
    }
    for (const HostRegion& r : regions) std::fill_n(static_cast<unsigned char*>(r.data), r.bytes, 0xff);
    run(p);
    // Every region comes back, inputs too: an out-of-place call that wrote its inputs fails.
    for (size_t i = 0; i < regions.size(); ++i) memory.download(regions[i].data, copies[i].data, regions[i].bytes);
  };
  return {std::move(name), f64, std::move(body)};
}

}  // namespace ropekit::cases
