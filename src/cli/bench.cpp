// `ropekit bench`: apply_rope on a preset's head configuration, as a ratio to memcpy of the same
// bytes measured in the same run (medians of several repeats).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <utility>

#include "cli.hpp"
#include "ropekit/apply.hpp"
#include "ropekit/table.hpp"

namespace ropekit::cli {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int64_t kMaxBenchBytes = int64_t{1} << 32;  // q and k of one shape

// Median seconds per call: each repeat runs enough calls to last about 5 ms. repeats >= 1.
double median_seconds(const std::function<void()>& fn, int repeats) {
  fn();  // warm up (page faults, table growth)
  const auto t0 = Clock::now();
  fn();
  const double once = std::chrono::duration<double>(Clock::now() - t0).count();
  const int calls = static_cast<int>(std::clamp(0.005 / std::max(once, 1e-9), 1.0, 100000.0));
  std::vector<double> times;
  for (int r = 0; r < repeats; ++r) {
    const auto start = Clock::now();
    for (int c = 0; c < calls; ++c) fn();
    times.push_back(std::chrono::duration<double>(Clock::now() - start).count() / calls);
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

struct Shape {
  std::string name;
  int64_t batch, seq;
  bool decode;
};

struct Result {
  std::string shape;
  int64_t batch, seq, bytes;
  double rope_s, memcpy_s;
};

DType parse_dtype(const std::string& s) {
  if (s == "f32") return DType::f32;
  if (s == "f16") return DType::f16;
  if (s == "bf16") return DType::bf16;
  throw UsageError("--dtype: expected f32, f16 or bf16, got \"" + s + "\"");
}

}  // namespace

int cmd_bench(const std::vector<std::string>& tokens, std::ostream& out) {
  std::set<std::string> values = spec_value_flags();
  values.insert({"device", "prefill", "decode-batch", "repeats", "dtype", "threads", "q-heads", "k-heads"});
  const Args args(tokens, "bench", values, {"json"});
  const std::string device = args.text("device").value_or("cpu");
  if (device != "cpu") throw UsageError("--device: expected cpu (this command has no CUDA path yet), got \"" + device + "\"");
  const Resolved r = resolve(args, "llama3.1-8b");
  const int64_t prefill = args.integer("prefill").value_or(2048);
  const int64_t decode_batch = args.integer("decode-batch").value_or(32);
  const int repeats = static_cast<int>(args.integer("repeats").value_or(7));  // at most 1000
  const DType dtype = parse_dtype(args.text("dtype").value_or("bf16"));
  const int threads = static_cast<int>(args.integer("threads").value_or(0));
  const int64_t hq = args.integer("q-heads").value_or(r.num_attention_heads ? r.num_attention_heads : 32);
  const int64_t hk = args.integer("k-heads").value_or(r.num_key_value_heads ? r.num_key_value_heads : hq);
  const int64_t d = r.spec.head_dim();
  const int64_t esize = dtype_size(dtype);
  // Each shape holds q and k twice (rotated, and memcpy's source and destination): bound their size.
  for (const auto& [flag, count] : {std::pair<const char*, int64_t>{"prefill", prefill}, {"decode-batch", decode_batch}}) {
    const int64_t bytes = count * (hq + hk) * d * esize;  // < 2^53 with the flags' ranges
    if (bytes > kMaxBenchBytes)
      throw UsageError(std::string("--") + flag + ": expected q and k of at most " + std::to_string(kMaxBenchBytes) +
                       " bytes (tokens x (q heads + k heads) x head_dim x dtype size), got " + std::to_string(bytes) +
                       " bytes for " + std::to_string(count) + " tokens");
  }

  RopeTable table(r.spec, prefill + 1);
  std::mt19937_64 rng(1234);
  std::uniform_int_distribution<uint16_t> bits(0x3000, 0x3c00);  // finite, O(1) values in f16 and bf16 alike

  std::vector<Result> results;
  for (const Shape& shape : {Shape{"prefill", 1, prefill, false}, Shape{"decode", decode_batch, 1, true}}) {
    const int64_t nq = shape.batch * shape.seq * hq * d, nk = shape.batch * shape.seq * hk * d;
    const int64_t bytes_one = (nq + nk) * esize;
    std::vector<unsigned char> q(static_cast<size_t>(nq * esize)), k(static_cast<size_t>(nk * esize));
    if (dtype == DType::f32) {
      std::uniform_real_distribution<float> v(-1, 1);
      for (size_t i = 0; i < q.size() / 4; ++i) { float x = v(rng); std::memcpy(&q[i * 4], &x, 4); }
      for (size_t i = 0; i < k.size() / 4; ++i) { float x = v(rng); std::memcpy(&k[i * 4], &x, 4); }
    } else {
      for (size_t i = 0; i < q.size() / 2; ++i) { uint16_t x = bits(rng); std::memcpy(&q[i * 2], &x, 2); }
      for (size_t i = 0; i < k.size() / 2; ++i) { uint16_t x = bits(rng); std::memcpy(&k[i * 2], &x, 2); }
    }
    // Decode: each sequence appends one token at its own cache length (< prefill).
    std::vector<int64_t> offsets(static_cast<size_t>(shape.batch));
    std::uniform_int_distribution<int64_t> at(0, prefill - 1);
    for (auto& o : offsets) o = shape.decode ? at(rng) : 0;
    RopeTensors t{TensorView::bshd(q.data(), dtype, shape.batch, shape.seq, hq, d),
                  TensorView::bshd(k.data(), dtype, shape.batch, shape.seq, hk, d), std::nullopt, std::nullopt};
    const Positions positions = Positions::per_sequence(IndexView(offsets.data(), shape.batch));
    ApplyOptions options;
    options.num_threads = threads;
    // Forward then inverse keeps the values bounded however many calls run; both cost the same.
    bool forward = true;
    const double rope_s = median_seconds(
        [&] {
          options.direction = forward ? Direction::forward : Direction::inverse;
          forward = !forward;
          apply_rope(t, positions, table, options);
        },
        repeats);
    std::vector<unsigned char> src(static_cast<size_t>(bytes_one), 1), dst(static_cast<size_t>(bytes_one));
    const double memcpy_s = median_seconds([&] { std::memcpy(dst.data(), src.data(), src.size()); }, repeats);
    results.push_back({shape.name, shape.batch, shape.seq, 2 * bytes_one, rope_s, memcpy_s});
  }

  if (args.flag("json")) {
    nlohmann::json j;
    j["source"] = r.source;
    j["name"] = r.name;
    j["device"] = device;
    j["dtype"] = to_string(dtype);
    j["head_dim"] = d;
    j["q_heads"] = hq;
    j["k_heads"] = hk;
    j["repeats"] = repeats;
    auto& arr = j["shapes"] = nlohmann::json::array();
    for (const auto& x : results) {
      const double gbps = static_cast<double>(x.bytes) / x.rope_s / 1e9;
      const double mgbps = static_cast<double>(x.bytes) / x.memcpy_s / 1e9;
      arr.push_back({{"shape", x.shape}, {"batch", x.batch}, {"seq", x.seq}, {"bytes", x.bytes},
                     {"seconds", x.rope_s}, {"gb_per_s", gbps}, {"memcpy_seconds", x.memcpy_s},
                     {"memcpy_gb_per_s", mgbps}, {"ratio_to_memcpy", gbps / mgbps}});
    }
    out << j.dump(2) << "\n";
    return 0;
  }
  out << "bench " << (r.source == "flags" ? "flags" : r.source + " " + r.name) << " on cpu, " << to_string(dtype)
      << ", head_dim " << d << ", q heads " << hq << ", k heads " << hk << "; median of " << repeats << " repeats\n";
  out << "bytes = q and k read + written once (in place); memcpy copies the same bytes in the same run\n";
  char line[200];
  std::snprintf(line, sizeof line, "%-8s %6s %6s %12s %11s %10s %12s %8s\n", "shape", "batch", "seq", "bytes", "time (us)",
                "GB/s", "memcpy GB/s", "ratio");
  out << line;
  for (const auto& x : results) {
    const double gbps = static_cast<double>(x.bytes) / x.rope_s / 1e9;
    const double mgbps = static_cast<double>(x.bytes) / x.memcpy_s / 1e9;
    std::snprintf(line, sizeof line, "%-8s %6lld %6lld %12lld %11.2f %10.2f %12.2f %8.3f\n", x.shape.c_str(),
                  static_cast<long long>(x.batch), static_cast<long long>(x.seq), static_cast<long long>(x.bytes),
                  x.rope_s * 1e6, gbps, mgbps, gbps / mgbps);
    out << line;
  }
  return 0;
}

}  // namespace ropekit::cli
