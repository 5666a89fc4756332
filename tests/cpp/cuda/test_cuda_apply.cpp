// The CUDA path against the CPU path and the float64 reference, over every option: dtype, style,
// direction, partial rotary, xPos, in/out of place, q+k with different head counts, positions
// (offset, per-sequence offsets, int32/int64 ids, packed cu_seqlens with and without offsets),
// layouts (BSHD, BHSD, THD, padded rows: every access width), table rows, positions past them or
// in-kernel sincos, exact angles.
#include <algorithm>
#include <cstdlib>
#include <optional>
#include <sstream>

#include "cuda/launch_config.hpp"
#include "cuda_test_util.hpp"
#include "ropekit/cuda.hpp"

namespace ropekit_cuda_test {
namespace {

enum class PosKind { from_offset, per_sequence, ids32, ids64, packed, packed_offsets };

// t steps every 3 positions, so each case's few positions see several values.
const QueryScale kQueryScale{1.25, 0.3, 3, 1};

struct Case {
  DType dtype = DType::bf16;
  Style style = Style::half;
  Direction direction = Direction::forward;
  int64_t head_dim = 64;
  int64_t rotary_dim = 0;  // 0: head_dim
  bool xpos = false;
  PosKind pos = PosKind::from_offset;
  Layout layout = Layout::bshd;
  int64_t pad = 0;
  bool in_place = true;
  bool compute_sincos = false;
  bool exact = false;
  bool has_k = true;
  int64_t B = 2, S = 7, Hq = 4, Hk = 2;
  int64_t start = 3;             // offset positions
  int heads_per_thread = 0;      // 0: automatic launch configuration
  bool short_table = false;      // rows for half the positions: the others computed in the kernel
  bool query_scale = false;      // ApplyOptions::query_scale (kQueryScale) on q

  std::string describe() const {
    std::ostringstream o;
    o << to_string(dtype) << " " << (style == Style::half ? "half" : "interleaved") << " dir="
      << static_cast<int>(direction) << " D=" << head_dim << " R=" << (rotary_dim ? rotary_dim : head_dim)
      << " xpos=" << xpos << " pos=" << static_cast<int>(pos) << " layout=" << static_cast<int>(layout)
      << " pad=" << pad << " in_place=" << in_place << " sincos=" << compute_sincos << " exact=" << exact
      << " k=" << has_k << " B=" << B << " S=" << S << " Hq=" << Hq << " Hk=" << Hk << " start=" << start
      << " hpt=" << heads_per_thread << " short_table=" << short_table << " query_scale=" << query_scale;
    return o.str();
  }
};

ropekit::ref64::RefDirection ref_direction(Direction d) {
  return d == Direction::forward ? ropekit::ref64::RefDirection::forward
         : d == Direction::backward ? ropekit::ref64::RefDirection::backward
                                    : ropekit::ref64::RefDirection::inverse;
}

// Positions of every token (b-major) and the matching host description.
struct HostPositions {
  std::vector<int64_t> per_token;
  std::vector<int64_t> values64;
  std::vector<int64_t> cu;
  bool i32 = false;
};

HostPositions make_positions(const Case& c, std::mt19937_64& rng) {
  HostPositions h;
  std::uniform_int_distribution<int64_t> small(0, 60);
  const int64_t B = c.layout == Layout::thd ? 1 : c.B;
  switch (c.pos) {
    case PosKind::from_offset:
      for (int64_t b = 0; b < B; ++b)
        for (int64_t s = 0; s < c.S; ++s) h.per_token.push_back(c.start + s);
      break;
    case PosKind::per_sequence:
      for (int64_t b = 0; b < B; ++b) h.values64.push_back(small(rng));
      for (int64_t b = 0; b < B; ++b)
        for (int64_t s = 0; s < c.S; ++s) h.per_token.push_back(h.values64[static_cast<size_t>(b)] + s);
      break;
    case PosKind::ids32:
    case PosKind::ids64:
      h.i32 = c.pos == PosKind::ids32;
      for (int64_t t = 0; t < B * c.S; ++t) h.values64.push_back(small(rng) * 3);
      for (int64_t v : h.values64) h.per_token.push_back(v);
      break;
    case PosKind::packed:
    case PosKind::packed_offsets: {
      // Split S tokens into up to 4 sequences, one of them empty when possible.
      h.cu = {0};
      std::uniform_int_distribution<int64_t> cut(0, c.S);
      std::vector<int64_t> cuts = {cut(rng), cut(rng), cut(rng)};
      std::sort(cuts.begin(), cuts.end());
      for (int64_t x : cuts) h.cu.push_back(x);
      h.cu.push_back(c.S);
      const size_t n = h.cu.size() - 1;
      if (c.pos == PosKind::packed_offsets)
        for (size_t i = 0; i < n; ++i) h.values64.push_back(small(rng));
      for (size_t i = 0; i < n; ++i)
        for (int64_t t = h.cu[i]; t < h.cu[i + 1]; ++t)
          h.per_token.push_back(t - h.cu[i] + (h.values64.empty() ? 0 : h.values64[i]));
      h.i32 = (h.cu.size() % 2) == 0;  // vary the index type
      break;
    }
  }
  return h;
}

// IndexView over the host vector (int32 copy kept in `keep`) or its device copy.
IndexView index_view(const std::vector<int64_t>& v64, std::vector<int32_t>& keep, const void* device_data, bool i32,
                     Device device) {
  const auto n = static_cast<int64_t>(v64.size());
  if (device.type == DeviceType::cpu) {
    if (!i32) return IndexView(v64.data(), n, device);
    keep.assign(v64.begin(), v64.end());
    return IndexView(keep.data(), n, device);
  }
  if (i32) return IndexView(static_cast<const int32_t*>(device_data), n, device);
  return IndexView(static_cast<const int64_t*>(device_data), n, device);
}

DeviceBuffer upload_index(const std::vector<int64_t>& v, bool i32) {
  if (i32) {
    std::vector<int32_t> w(v.begin(), v.end());
    DeviceBuffer d(w.size() * 4);
    d.upload(w.data(), w.size() * 4);
    return d;
  }
  DeviceBuffer d(v.size() * 8);
  d.upload(v.data(), v.size() * 8);
  return d;
}

// The API's Positions for `h`, on the host or on the device. `keep` holds int32 host copies.
Positions make_api_positions(const Case& c, const HostPositions& h, Device device, const DeviceBuffer* values,
                             const DeviceBuffer* cu, std::vector<int32_t> (&keep)[2]) {
  const void* dv = values ? values->get() : nullptr;
  const void* dc = cu ? cu->get() : nullptr;
  switch (c.pos) {
    case PosKind::from_offset: return Positions::from_offset(c.start);
    case PosKind::per_sequence: return Positions::per_sequence(index_view(h.values64, keep[0], dv, false, device));
    case PosKind::ids32:
    case PosKind::ids64: return Positions::token_ids(index_view(h.values64, keep[0], dv, h.i32, device));
    case PosKind::packed: return Positions::packed(index_view(h.cu, keep[1], dc, h.i32, device));
    case PosKind::packed_offsets:
      return Positions::packed(index_view(h.cu, keep[1], dc, h.i32, device),
                               index_view(h.values64, keep[0], dv, false, device));
  }
  return {};
}

// Runs `c` on the CPU and on the GPU and checks both outputs element by element.
void run_case(const Case& c, uint64_t seed) {
  SCOPED_TRACE(c.describe() + " seed=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const int64_t rotary = c.rotary_dim ? c.rotary_dim : c.head_dim;
  SpecParams sp;
  sp.head_dim = c.head_dim;
  sp.rotary_dim = rotary;
  sp.base = 10000.0;
  sp.style = c.style;
  if (c.xpos) sp.xpos = Xpos{};
  const RopeSpec spec(sp);

  const int64_t B = c.layout == Layout::thd ? 1 : c.B;
  HostTensor q(c.dtype, c.layout, B, c.S, c.Hq, c.head_dim, c.pad);
  HostTensor k(c.dtype, c.layout, B, c.S, c.Hk, c.head_dim, c.pad);
  q.fill_random(rng);
  k.fill_random(rng);
  HostTensor q_out = q;
  HostTensor k_out = k;
  if (!c.in_place) {
    q_out.poison();
    k_out.poison();
  }
  const HostPositions hp = make_positions(c, rng);
  int64_t needed = 0;
  for (int64_t p : hp.per_token) needed = std::max(needed, p + 1);
  TableOptions copts;
  copts.exact = c.exact;
  // In-kernel sincos must not read rows: give it a table too short for the positions.
  const RopeTable table(spec, c.compute_sincos ? 1 : c.short_table ? needed / 2 : needed, copts);
  ApplyOptions opts;
  opts.direction = c.direction;
  opts.compute_sincos = c.compute_sincos;
  opts.xpos_center = c.xpos ? 5.0 : 0.0;
  if (c.query_scale) opts.query_scale = kQueryScale;

  // CPU path.
  HostTensor q_cpu = c.in_place ? q : q_out;
  HostTensor k_cpu = c.in_place ? k : k_out;
  HostTensor q_cpu_in = q, k_cpu_in = k;
  {
    RopeTensors t;
    t.q = (c.in_place ? q_cpu : q_cpu_in).view((c.in_place ? q_cpu : q_cpu_in).bytes.data(), Device::cpu());
    if (c.has_k) t.k = (c.in_place ? k_cpu : k_cpu_in).view((c.in_place ? k_cpu : k_cpu_in).bytes.data(), Device::cpu());
    if (!c.in_place) {
      t.q_out = q_cpu.view(q_cpu.bytes.data(), Device::cpu());
      if (c.has_k) t.k_out = k_cpu.view(k_cpu.bytes.data(), Device::cpu());
    }
    std::vector<int32_t> keep[2];
    apply_rope(t, make_api_positions(c, hp, Device::cpu(), nullptr, nullptr, keep), table, opts);
  }

  // GPU path.
  const Device dev = Device::cuda(0);
  DeviceBuffer dq(q.bytes.size()), dk(k.bytes.size());
  dq.upload(q.bytes.data(), q.bytes.size());
  dk.upload(k.bytes.data(), k.bytes.size());
  DeviceBuffer dq_out(q.bytes.size()), dk_out(k.bytes.size());
  dq_out.upload(q_out.bytes.data(), q_out.bytes.size());
  dk_out.upload(k_out.bytes.data(), k_out.bytes.size());
  std::optional<DeviceBuffer> dvalues, dcu;
  const bool values_i32 = c.pos == PosKind::ids32;
  if (!hp.values64.empty()) dvalues.emplace(upload_index(hp.values64, values_i32));
  if (!hp.cu.empty()) dcu.emplace(upload_index(hp.cu, hp.i32));
  {
    RopeTensors t;
    t.q = q.view(dq.get(), dev);
    if (c.has_k) t.k = k.view(dk.get(), dev);
    if (!c.in_place) {
      t.q_out = q.view(dq_out.get(), dev);
      if (c.has_k) t.k_out = k.view(dk_out.get(), dev);
    }
    ropekit::detail::cuda::set_heads_per_thread_override(c.heads_per_thread);
    std::vector<int32_t> keep[2];
    apply_rope(t, make_api_positions(c, hp, dev, dvalues ? &*dvalues : nullptr, dcu ? &*dcu : nullptr, keep), table,
               opts);
    ropekit::detail::cuda::set_heads_per_thread_override(0);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    ropekit::cuda_check_errors();  // valid device-resident positions: nothing reported
  }
  HostTensor q_gpu = q, k_gpu = k;
  (c.in_place ? dq : dq_out).download(q_gpu.bytes.data(), q_gpu.bytes.size());
  (c.in_place ? dk : dk_out).download(k_gpu.bytes.data(), k_gpu.bytes.size());

  // Reference description, written from the formulas (not from ropekit's tables).
  ropekit::ref64::RefRope ref;
  ref.head_dim = c.head_dim;
  ref.rotary_dim = rotary;
  ref.style = c.style == Style::half ? ropekit::ref64::RefStyle::half : ropekit::ref64::RefStyle::interleaved;
  for (int64_t i = 0; i < rotary / 2; ++i) {
    ref.inv_freq.push_back(1.0 / std::pow(10000.0, static_cast<double>(2 * i) / static_cast<double>(rotary)));
    ref.xpos_zeta.push_back((static_cast<double>(2 * i) + 0.4 * static_cast<double>(rotary)) / (1.4 * static_cast<double>(rotary)));
  }
  ref.xpos = c.xpos;
  ref.xpos_scale_base = 512.0;
  ref.xpos_center = opts.xpos_center;
  ref.float32_angles = !c.exact;

  const double eps = storage_eps(c.dtype);
  const double tol = reference_tol(c.dtype);
  int64_t failures = 0;
  auto check_operand = [&](const HostTensor& in, const HostTensor& initial_out, const HostTensor& cpu,
                           const HostTensor& gpu, double sign, const char* name) {
    std::vector<char> visited(static_cast<size_t>(in.numel_storage()), 0);
    for (int64_t b = 0; b < in.B; ++b) {
      for (int64_t s = 0; s < in.S; ++s) {
        const int64_t position = hp.per_token[static_cast<size_t>(b * in.S + s)];
        for (int64_t h = 0; h < in.H; ++h) {
          std::vector<double> x(static_cast<size_t>(in.D));
          for (int64_t d = 0; d < in.D; ++d) x[static_cast<size_t>(d)] = get(in.bytes, in.dtype, in.index(b, s, h, d));
          std::vector<double> y = ropekit::ref64::reference_row(ref, x, position, sign, ref_direction(c.direction));
          if (c.query_scale && sign > 0) {
            const double t = ropekit::ref64::query_scale(kQueryScale.factor, kQueryScale.beta, kQueryScale.length,
                                                         kQueryScale.shift, position);
            for (double& v : y) v = c.direction == Direction::inverse ? v / t : v * t;
          }
          double row_max = 0.0;
          for (double v : y) row_max = std::max(row_max, std::fabs(v));
          for (int64_t d = 0; d < in.D; ++d) {
            const int64_t i = in.index(b, s, h, d);
            visited[static_cast<size_t>(i)] = 1;
            const double g = get(gpu.bytes, in.dtype, i);
            const double cpu_v = get(cpu.bytes, in.dtype, i);
            const double r = y[static_cast<size_t>(d)];
            const bool ok_cpu = std::fabs(g - cpu_v) <= eps * (std::fabs(cpu_v) + 1e-3);  // one storage ulp
            const bool ok_ref = std::fabs(g - r) <= tol * row_max;
            if (std::isnan(g) || !ok_cpu || !ok_ref) {
              if (++failures <= 5)
                ADD_FAILURE() << name << "[" << b << "," << s << "," << h << "," << d << "] position " << position
                              << ": gpu " << g << " cpu " << cpu_v << " reference " << r;
            }
          }
        }
      }
    }
    // Gaps between rows (padded layout) are never written.
    for (int64_t i = 0; i < in.numel_storage(); ++i) {
      if (visited[static_cast<size_t>(i)]) continue;
      const size_t es = elem_size(in.dtype);
      if (std::memcmp(gpu.bytes.data() + i * es, initial_out.bytes.data() + i * es, es) != 0 && ++failures <= 5)
        ADD_FAILURE() << name << ": element " << i << " outside the view was written";
    }
  };
  check_operand(q, c.in_place ? q : q_out, q_cpu, q_gpu, 1.0, "q");
  if (c.has_k) {
    check_operand(k, c.in_place ? k : k_out, k_cpu, k_gpu, -1.0, "k");
  } else {
    // Without k, the k buffers are untouched.
    EXPECT_EQ(k_gpu.bytes, c.in_place ? k.bytes : k_out.bytes);
  }
  EXPECT_EQ(failures, 0);
}

uint64_t fresh_seed() {
  static std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

const DType kDtypes[] = {DType::f32, DType::f16, DType::bf16};
const Style kStyles[] = {Style::half, Style::interleaved};
const Direction kDirections[] = {Direction::forward, Direction::backward, Direction::inverse};

TEST(CudaApply, EveryDtypeStyleDirection) {
  ROPEKIT_REQUIRE_GPU();
  for (DType t : kDtypes)
    for (Style st : kStyles)
      for (Direction d : kDirections)
        for (bool in_place : {true, false}) {
          Case c;
          c.dtype = t;
          c.style = st;
          c.direction = d;
          c.in_place = in_place;
          run_case(c, fresh_seed());
        }
}

// The query scale fused on q: every dtype, style and direction, full and partial rotary (the
// tail is scaled, in place too), device-resident positions.
TEST(CudaApply, QueryScale) {
  ROPEKIT_REQUIRE_GPU();
  int index = 0;
  for (DType t : kDtypes)
    for (Style st : kStyles)
      for (Direction d : kDirections)
        for (int64_t rotary : {int64_t{0}, int64_t{40}}) {
          Case c;
          c.dtype = t;
          c.style = st;
          c.direction = d;
          c.rotary_dim = rotary;
          c.query_scale = true;
          c.in_place = index % 2 == 0;
          c.pos = static_cast<PosKind>(index++ % 4);
          c.xpos = index % 5 == 0;
          run_case(c, fresh_seed());
        }
}

// apply_query_scale (a NoPE layer: no pairs) on the device equals the CPU, f32 with device ids.
TEST(CudaApply, QueryScaleWithoutRotation) {
  ROPEKIT_REQUIRE_GPU();
  const int64_t T = 37, H = 3, D = 72;
  std::mt19937_64 rng(fresh_seed());
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::vector<float> q(static_cast<size_t>(T * H * D));
  for (float& v : q) v = u(rng);
  std::vector<int64_t> ids(static_cast<size_t>(T));
  for (int64_t& id : ids) id = static_cast<int64_t>(rng() % 50);
  for (Direction d : kDirections) {
    std::vector<float> cpu = q;
    ApplyOptions opts;
    opts.direction = d;
    apply_query_scale(TensorView::thd(cpu.data(), DType::f32, T, H, D), Positions::token_ids(IndexView(ids.data(), T)),
                      kQueryScale, opts);
    DeviceBuffer dq(q.size() * sizeof(float));
    dq.upload(q.data(), q.size() * sizeof(float));
    DeviceBuffer dids(ids.size() * sizeof(int64_t));
    dids.upload(ids.data(), ids.size() * sizeof(int64_t));
    apply_query_scale(TensorView::thd(dq.get(), DType::f32, T, H, D, Device::cuda(0)),
                      Positions::token_ids(IndexView(static_cast<const int64_t*>(dids.get()), T, Device::cuda(0))),
                      kQueryScale, opts);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<float> gpu(q.size());
    dq.download(gpu.data(), gpu.size() * sizeof(float));
    // One fp32 rounding each; t from the host's and the device's log1p (equal, or one ulp apart).
    int failures = 0;
    for (size_t i = 0; i < gpu.size(); ++i)
      if (!(std::fabs(gpu[i] - cpu[i]) <= std::ldexp(std::fabs(cpu[i]), -22)) && ++failures <= 3)
        ADD_FAILURE() << "direction " << static_cast<int>(d) << " element " << i << ": gpu " << gpu[i] << ", cpu " << cpu[i];
  }
}

TEST(CudaApply, PositionsAndLayouts) {
  ROPEKIT_REQUIRE_GPU();
  for (DType t : kDtypes)
    for (PosKind pk : {PosKind::from_offset, PosKind::per_sequence, PosKind::ids32, PosKind::ids64})
      for (Layout l : {Layout::bshd, Layout::bhsd}) {
        Case c;
        c.dtype = t;
        c.pos = pk;
        c.layout = l;
        run_case(c, fresh_seed());
      }
  for (DType t : kDtypes)
    for (PosKind pk : {PosKind::from_offset, PosKind::ids64, PosKind::packed, PosKind::packed_offsets}) {
      Case c;
      c.dtype = t;
      c.pos = pk;
      c.layout = Layout::thd;
      c.S = 23;
      c.in_place = pk != PosKind::packed;
      run_case(c, fresh_seed());
    }
}

TEST(CudaApply, PartialRotaryXposSincosExact) {
  ROPEKIT_REQUIRE_GPU();
  for (DType t : kDtypes)
    for (Style st : kStyles)
      for (bool in_place : {true, false}) {
        Case c;
        c.dtype = t;
        c.style = st;
        c.head_dim = 128;
        c.rotary_dim = 32;  // vectorised pass-through tail when out of place
        c.in_place = in_place;
        run_case(c, fresh_seed());
        c.head_dim = 80;
        c.rotary_dim = 20;  // 10 pairs: element-wise path, partial tail chunk
        run_case(c, fresh_seed());
      }
  for (DType t : kDtypes)
    for (Direction d : kDirections) {
      Case c;
      c.dtype = t;
      c.direction = d;
      c.xpos = true;
      c.start = 40;
      run_case(c, fresh_seed());
      c.compute_sincos = true;
      run_case(c, fresh_seed());
      c.xpos = false;
      c.exact = true;
      run_case(c, fresh_seed());
    }
}

TEST(CudaApply, InKernelSincosAtPositionOneMillion) {
  ROPEKIT_REQUIRE_GPU();
  for (DType t : {DType::f32, DType::bf16})
    for (bool exact : {false, true}) {
      Case c;
      c.dtype = t;
      c.head_dim = 128;
      c.compute_sincos = true;
      c.exact = exact;
      c.start = 1000000;
      c.S = 5;
      run_case(c, fresh_seed());
    }
}

TEST(CudaApply, GqaHeadCountsAndQOnly) {
  ROPEKIT_REQUIRE_GPU();
  const int64_t heads[][2] = {{32, 8}, {8, 1}, {3, 5}, {1, 1}, {12, 4}};
  for (const auto& hk : heads)
    for (int hpt : {0, 1, 3, 8}) {
      Case c;
      c.Hq = hk[0];
      c.Hk = hk[1];
      c.heads_per_thread = hpt;  // forced groups reach the multi-head loop and ragged last groups
      c.in_place = hpt % 2 == 0;
      run_case(c, fresh_seed());
    }
  Case q_only;
  q_only.has_k = false;
  run_case(q_only, fresh_seed());
  q_only.in_place = false;
  run_case(q_only, fresh_seed());
}

TEST(CudaApply, OddSizes) {
  ROPEKIT_REQUIRE_GPU();
  for (int64_t d : {64, 80, 128, 256})
    for (DType t : kDtypes) {
      Case c;
      c.dtype = t;
      c.head_dim = d;
      c.B = 1;
      c.S = 1;  // one token
      run_case(c, fresh_seed());
    }
  for (DType t : kDtypes) {
    Case c;
    c.dtype = t;
    c.head_dim = 128;
    c.B = 1;
    c.S = 4097;
    c.Hq = 2;
    c.Hk = 1;
    c.in_place = t != DType::f16;
    run_case(c, fresh_seed());
  }
  // Rows that break 16-byte alignment (odd padding: 8, 4, 2-byte and element-wise accesses) and
  // aligned gaps between rows.
  for (int64_t pad : {1, 2, 3, 4, 8})
    for (DType t : kDtypes) {
      Case c;
      c.dtype = t;
      c.layout = Layout::padded;
      c.pad = pad;
      c.in_place = pad != 3;
      c.style = pad == 1 ? Style::interleaved : Style::half;
      run_case(c, fresh_seed());
    }
}

// Every access width (padding between head rows), both styles, with a table that covers only half
// the positions (the rest computed in the kernel) and with device-resident positions.
TEST(CudaApply, AccessWidthsAndPositionsPastTheRows) {
  ROPEKIT_REQUIRE_GPU();
  int index = 0;
  for (DType t : kDtypes)
    for (Style st : kStyles)
      for (int64_t pad : {0, 1, 2, 4})
        for (bool short_table : {false, true}) {
          Case c;
          c.dtype = t;
          c.style = st;
          c.head_dim = 128;
          c.layout = pad ? Layout::padded : Layout::bshd;
          c.pad = pad;
          c.short_table = short_table;
          c.start = 20;
          c.pos = index % 3 == 0 ? PosKind::from_offset : index % 3 == 1 ? PosKind::per_sequence : PosKind::ids64;
          c.xpos = index % 4 == 3;
          c.direction = kDirections[index % 3];
          c.in_place = index % 2 == 0;
          ++index;
          run_case(c, fresh_seed());
        }
}

// A seeded random walk over the whole option space.
TEST(CudaApply, RandomCombinations) {
  ROPEKIT_REQUIRE_GPU();
  std::mt19937_64 pick(fresh_seed());
  auto one = [&](auto... options) {
    const std::initializer_list<int> list{options...};
    return *(list.begin() + static_cast<long>(pick() % list.size()));
  };
  for (int i = 0; i < 120; ++i) {
    Case c;
    c.dtype = kDtypes[pick() % 3];
    c.style = kStyles[pick() % 2];
    c.direction = kDirections[pick() % 3];
    c.head_dim = one(64, 80, 128, 256);
    c.rotary_dim = one(0, 0, 16, 32);
    c.xpos = pick() % 4 == 0;
    c.layout = static_cast<Layout>(pick() % 4);
    c.pad = c.layout == Layout::padded ? one(1, 2, 8) : 0;
    c.pos = c.layout == Layout::thd ? static_cast<PosKind>(one(0, 3, 4, 5))
                                    : static_cast<PosKind>(pick() % 4);
    c.in_place = pick() % 2 == 0;
    c.compute_sincos = pick() % 3 == 0;
    c.exact = pick() % 4 == 0;
    c.has_k = pick() % 5 != 0;
    c.B = one(1, 2, 3);
    c.S = one(1, 2, 9, 33);
    c.Hq = one(1, 4, 6);
    c.Hk = one(1, 2, 3);
    c.heads_per_thread = one(0, 0, 2, 4);
    c.short_table = pick() % 3 == 0;
    run_case(c, fresh_seed());
    if (HasFailure()) break;
  }
}

}  // namespace
}  // namespace ropekit_cuda_test
