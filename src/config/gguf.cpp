// GGUF -> RopeSpec. The file is read through a bounds-checked cursor: every length, count and
// offset is compared with the bytes left before it is used, so a hostile file fails with a
// ropekit::Error that names the section or key, and nothing is allocated past small fixed limits.
// Two passes over the key/value section: the first finds general.architecture and general.alignment
// and skips everything else; the second keeps only the {arch}.* keys RoPE needs.
#include "ropekit/gguf.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <memory>

#include "check.hpp"
#include "config/gguf_arch.hpp"
#include "half_float.hpp"
#include "ropekit/error.hpp"

namespace ropekit {
namespace {

using detail::cat;
using detail::GgufRopeMode;

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;  // GGML_MAX_DIMS

// GGUF value types.
enum : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12, kTypeCount = 13,
};

const char* type_name(uint32_t t) {
  static const char* const names[] = {"uint8", "int8",   "uint16", "int16",  "uint32", "int32", "float32",
                                      "bool",  "string", "array",  "uint64", "int64",  "float64"};
  return t < kTypeCount ? names[t] : "?";
}

uint64_t scalar_size(uint32_t t) {
  switch (t) {
    case kU8: case kI8: case kBool: return 1;
    case kU16: case kI16: return 2;
    case kU32: case kI32: case kF32: return 4;
    case kU64: case kI64: case kF64: return 8;
    default: return 0;  // string, array, invalid
  }
}

bool is_integer(uint32_t t) {
  return t == kU8 || t == kI8 || t == kU16 || t == kI16 || t == kU32 || t == kI32 || t == kU64 || t == kI64;
}
bool is_float(uint32_t t) { return t == kF32 || t == kF64; }

uint32_t byteswap32(uint32_t v) {
  return (v >> 24) | ((v >> 8) & 0xff00u) | ((v << 8) & 0xff0000u) | (v << 24);
}

// Text for a message: printable ASCII kept, anything else as \xNN, cut to about 80 characters.
std::string shown_text(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (out.size() >= 80) {
      out += "...";
      break;
    }
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out + "\"";
}

// ---- where the bytes come from ------------------------------------------------------------------

class Source {
 public:
  virtual ~Source() = default;
  uint64_t size() const { return size_; }
  // [offset, offset + n) lies inside the file: the cursor checked.
  virtual void read(uint64_t offset, char* out, size_t n) = 0;

 protected:
  uint64_t size_ = 0;
};

class MemorySource final : public Source {
 public:
  explicit MemorySource(std::string_view bytes) : bytes_(bytes) { size_ = bytes.size(); }
  void read(uint64_t offset, char* out, size_t n) override {
    if (n) std::memcpy(out, bytes_.data() + offset, n);
  }

 private:
  std::string_view bytes_;
};

// Buffered reads of a regular file: the metadata is read front to back in small pieces.
class FileSource final : public Source {
 public:
  FileSource(std::ifstream& in, uint64_t size) : in_(in), buffer_(size_t{1} << 16) { size_ = size; }
  void read(uint64_t offset, char* out, size_t n) override {
    while (n > 0) {
      if (offset < start_ || offset >= start_ + filled_) fill(offset);
      const size_t at = static_cast<size_t>(offset - start_);
      const size_t take = std::min(n, filled_ - at);
      std::memcpy(out, buffer_.data() + at, take);
      out += take;
      offset += take;
      n -= take;
    }
  }

 private:
  void fill(uint64_t offset) {
    const uint64_t want = std::min<uint64_t>(buffer_.size(), size_ - offset);
    in_.clear();
    in_.seekg(static_cast<std::streamoff>(offset));
    in_.read(buffer_.data(), static_cast<std::streamsize>(want));
    if (static_cast<uint64_t>(in_.gcount()) != want)
      throw Error(cat("GGUF file: expected ", want, " bytes at offset ", offset, ", got a read error (the file changed?)"));
    start_ = offset;
    filled_ = static_cast<size_t>(want);
  }

  std::ifstream& in_;
  std::vector<char> buffer_;
  uint64_t start_ = 0;
  size_t filled_ = 0;
};

class Cursor {
 public:
  explicit Cursor(Source& source) : src_(source) {}

  uint64_t pos() const { return pos_; }
  void seek(uint64_t pos) { pos_ = pos; }
  uint64_t left() const { return src_.size() - pos_; }
  uint64_t size() const { return src_.size(); }

  void need(uint64_t n, const std::string& what) const {
    if (n > left())
      throw Error(cat(what, ": expected ", n, " more bytes at offset ", pos_, ", got the end of the file (", left(),
                      " bytes left; a truncated file?)"));
  }

  uint64_t uint(unsigned bytes, const std::string& what) {
    need(bytes, what);
    unsigned char b[8];
    src_.read(pos_, reinterpret_cast<char*>(b), bytes);
    pos_ += bytes;
    uint64_t v = 0;
    for (unsigned i = bytes; i-- > 0;) v = (v << 8) | b[i];  // little-endian
    return v;
  }
  uint32_t u32(const std::string& what) { return static_cast<uint32_t>(uint(4, what)); }
  uint64_t u64(const std::string& what) { return uint(8, what); }

  void skip(uint64_t n, const std::string& what) {
    need(n, what);
    pos_ += n;
  }

  void bytes(char* out, uint64_t n, const std::string& what) {
    need(n, what);
    src_.read(pos_, out, static_cast<size_t>(n));
    pos_ += n;
  }

  // A length-prefixed string of at most `most` bytes.
  std::string string(uint64_t most, const std::string& what) {
    const uint64_t n = u64(what + " length");
    if (n > most) throw Error(cat(what, ": expected a string of at most ", most, " bytes, got a length of ", n));
    need(n, what);
    std::string s(static_cast<size_t>(n), '\0');
    bytes(s.data(), n, what);
    return s;
  }

  void skip_string(const std::string& what) {
    const uint64_t n = u64(what + " length");
    skip(n, what);
  }

 private:
  Source& src_;
  uint64_t pos_ = 0;
};

// ---- values -------------------------------------------------------------------------------------

struct Value {
  uint32_t type = 0;
  uint32_t element = 0;   // arrays: the element type
  uint64_t count = 0;     // arrays: the element count
  int64_t integer = 0;    // integer types (and bool), when it fits
  bool too_large = false; // a uint64 past INT64_MAX
  double real = 0;        // float types
  std::string text;       // strings
  std::vector<int64_t> integers;  // integer arrays (read only up to kMaxGgufStoredArray)
  uint64_t kv_index = 0;

  std::string shown() const {
    if (type == kString) return "string " + shown_text(text);
    if (type == kArray) return cat("an array of ", count, " ", type_name(element));
    if (type == kBool) return integer ? "bool true" : "bool false";
    if (is_float(type)) return cat(type_name(type), " ", real);
    if (too_large) return cat(type_name(type), " > 2^63");
    return cat(type_name(type), " ", integer);
  }
};

int64_t signed_of(uint64_t raw, uint32_t type) {
  switch (type) {
    case kI8: return static_cast<int8_t>(raw);
    case kI16: return static_cast<int16_t>(raw);
    case kI32: return static_cast<int32_t>(raw);
    case kI64: return static_cast<int64_t>(raw);
    default: return static_cast<int64_t>(raw);
  }
}

void skip_value(Cursor& c, uint32_t type, const std::string& what) {
  if (const uint64_t n = scalar_size(type)) return c.skip(n, what);
  if (type == kString) return c.skip_string(what);
  if (type != kArray) throw Error(cat(what, ": expected a value type 0..12, got ", type));
  const uint32_t element = c.u32(what + " element type");
  const uint64_t count = c.u64(what + " element count");
  if (element == kArray) throw Error(cat(what, ": expected an array of scalars or strings, got an array of arrays"));
  if (const uint64_t n = scalar_size(element)) {
    if (count > c.left() / n)
      throw Error(cat(what, ": expected ", count, " x ", n, " bytes of ", type_name(element), " values, got ", c.left(),
                      " bytes left in the file"));
    return c.skip(count * n, what);
  }
  if (element != kString) throw Error(cat(what, ": expected an array element type 0..12, got ", element));
  // Each string takes at least its 8-byte length: the loop is bounded by the bytes left.
  if (count > c.left() / 8)
    throw Error(cat(what, ": expected ", count, " strings (8 bytes each at least), got ", c.left(), " bytes left in the file"));
  for (uint64_t i = 0; i < count; ++i) c.skip_string(what);
}

Value read_value(Cursor& c, uint32_t type, const std::string& what) {
  Value v;
  v.type = type;
  if (is_integer(type) || type == kBool) {
    const uint64_t raw = c.uint(static_cast<unsigned>(scalar_size(type)), what);
    v.integer = signed_of(raw, type);
    v.too_large = type == kU64 && raw > static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  } else if (type == kF32) {
    v.real = std::bit_cast<float>(static_cast<uint32_t>(c.uint(4, what)));
  } else if (type == kF64) {
    v.real = std::bit_cast<double>(c.uint(8, what));
  } else if (type == kString) {
    v.text = c.string(kMaxGgufStringBytes, what);
  } else if (type == kArray) {
    const uint64_t start = c.pos();
    v.element = c.u32(what + " element type");
    v.count = c.u64(what + " element count");
    if (is_integer(v.element) && v.count <= kMaxGgufStoredArray) {
      const unsigned n = static_cast<unsigned>(scalar_size(v.element));
      c.need(v.count * n, what);
      for (uint64_t i = 0; i < v.count; ++i) {
        const uint64_t raw = c.uint(n, what);
        if (v.element == kU64 && raw > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
          throw Error(cat(what, "[", i, "]: expected an integer < 2^63, got uint64 ", raw));
        v.integers.push_back(signed_of(raw, v.element));
      }
    } else {
      c.seek(start);
      skip_value(c, kArray, what);
    }
  } else {
    throw Error(cat(what, ": expected a value type 0..12, got ", type));
  }
  return v;
}

// The {arch}.* keys RoPE needs.
constexpr const char* kWanted[] = {
    "context_length", "embedding_length", "attention.head_count", "attention.head_count_kv",
    "attention.key_length", "attention.key_length_swa", "attention.sliding_window", "attention.kv_lora_rank",
    "rope.freq_base", "rope.freq_base_swa", "rope.dimension_count", "rope.dimension_count_swa",
    "rope.dimension_sections", "rope.scale_linear", "rope.scaling.type", "rope.scaling.factor",
    "rope.scaling.attn_factor", "rope.scaling.original_context_length", "rope.scaling.finetuned",
    "rope.scaling.alpha", "rope.scaling.yarn_log_multiplier", "rope.scaling.yarn_ext_factor",
    "rope.scaling.yarn_attn_factor", "rope.scaling.yarn_beta_fast", "rope.scaling.yarn_beta_slow",
};

// The key/value pairs kept, with checked accessors whose errors name the key.
class Meta {
 public:
  explicit Meta(std::string arch) : arch_(std::move(arch)) {}
  const std::string& arch() const { return arch_; }
  std::string key(const std::string& suffix) const { return arch_ + "." + suffix; }

  bool wanted(const std::string& key) const {
    if (key.size() <= arch_.size() + 1 || key.compare(0, arch_.size(), arch_) != 0 || key[arch_.size()] != '.')
      return false;
    const std::string_view suffix = std::string_view(key).substr(arch_.size() + 1);
    return std::any_of(std::begin(kWanted), std::end(kWanted), [&](const char* w) { return suffix == w; });
  }

  void add(const std::string& key, Value v) {
    const uint64_t index = v.kv_index;
    const auto [it, inserted] = values_.emplace(key, std::move(v));
    if (!inserted)
      throw Error(cat(key, ": expected one value, got a second at key/value ", index, " (the first at ", it->second.kv_index,
                      ")"));
  }

  bool has(const std::string& suffix) const { return values_.count(key(suffix)) != 0; }

  std::optional<double> real(const std::string& suffix, double least, bool strict) const {
    const Value* v = find(suffix);
    if (!v) return std::nullopt;
    const std::string expected = cat("a float32 or float64 ", strict ? "> " : ">= ", least);
    if (!is_float(v->type)) bad(suffix, expected, *v);
    if (!std::isfinite(v->real) || (strict ? !(v->real > least) : !(v->real >= least))) bad(suffix, expected, *v);
    return v->real;
  }

  // Any integer type, in [least, kMax].
  std::optional<int64_t> integer(const std::string& suffix, int64_t least) const {
    const Value* v = find(suffix);
    if (!v) return std::nullopt;
    const std::string expected = cat("an integer in [", least, ", 2^31)");
    if (!is_integer(v->type)) bad(suffix, expected, *v);
    if (v->too_large || v->integer < least || v->integer > kMaxInt) bad(suffix, expected, *v);
    return v->integer;
  }

  std::optional<std::string> text(const std::string& suffix) const {
    const Value* v = find(suffix);
    if (!v) return std::nullopt;
    if (v->type != kString) bad(suffix, "a string", *v);
    return v->text;
  }

  // An integer, or an array of integers (one per layer).
  std::vector<int64_t> integers(const std::string& suffix, int64_t least) const {
    const Value* v = find(suffix);
    if (!v) return {};
    if (v->type != kArray) return {*integer(suffix, least)};
    const std::string expected = cat("an integer, or an array of at most ", kMaxGgufStoredArray, " integers in [", least,
                                     ", 2^31)");
    if (!is_integer(v->element) || v->count > kMaxGgufStoredArray || v->count == 0) bad(suffix, expected, *v);
    for (size_t i = 0; i < v->integers.size(); ++i)
      if (v->integers[i] < least || v->integers[i] > kMaxInt)
        throw Error(cat(key(suffix), "[", i, "]: expected an integer in [", least, ", 2^31), got ", v->integers[i]));
    return v->integers;
  }

  [[noreturn]] void bad(const std::string& suffix, const std::string& expected, const Value& v) const {
    throw Error(cat(key(suffix), ": expected ", expected, ", got ", v.shown()));
  }

  static constexpr int64_t kMaxInt = (int64_t{1} << 31) - 1;

 private:
  const Value* find(const std::string& suffix) const {
    const auto it = values_.find(key(suffix));
    return it == values_.end() ? nullptr : &it->second;
  }

  std::string arch_;
  std::map<std::string, Value> values_;
};

// ---- the RoPE tensors ---------------------------------------------------------------------------

struct TensorInfo {
  std::string name;
  uint32_t n_dims = 0;
  uint64_t dims[kMaxDims] = {1, 1, 1, 1};
  uint32_t type = 0;
  uint64_t offset = 0;
  bool present = false;
};

constexpr const char* kFreqs = "rope_freqs.weight";
constexpr const char* kLong = "rope_factors_long.weight";
constexpr const char* kShort = "rope_factors_short.weight";

struct RopeTensors {
  TensorInfo freqs, long_factors, short_factors;
  TensorInfo* slot(std::string_view name) {
    if (name == kFreqs) return &freqs;
    if (name == kLong) return &long_factors;
    if (name == kShort) return &short_factors;
    return nullptr;
  }
};

constexpr uint32_t kGgmlF32 = 0, kGgmlF16 = 1;

// The rotary_dim/2 positive factors of one tensor, from the data section.
std::vector<double> read_factors(Cursor& c, const TensorInfo& t, uint64_t data_start, uint64_t alignment,
                                 int64_t expected_count) {
  const std::string& what = t.name;
  if (t.type != kGgmlF32 && t.type != kGgmlF16)
    throw Error(cat(what, ": expected ggml type F32 (0) or F16 (1), got type ", t.type));
  for (uint32_t d = 1; d < kMaxDims; ++d)
    if (t.dims[d] != 1) throw Error(cat(what, ": expected a 1-D tensor, got dimension ", d, " of ", t.dims[d]));
  if (t.dims[0] != static_cast<uint64_t>(expected_count))
    throw Error(cat(what, ": expected ", expected_count, " values (rope.dimension_count / 2), got ", t.dims[0]));
  if (t.offset % alignment != 0)
    throw Error(cat(what, ": expected a data offset that is a multiple of general.alignment (", alignment, "), got ",
                    t.offset));
  const uint64_t element = t.type == kGgmlF32 ? 4 : 2;
  const uint64_t bytes = t.dims[0] * element;
  if (data_start > c.size() || t.offset > c.size() - data_start || bytes > c.size() - data_start - t.offset)
    throw Error(cat(what, ": expected its ", bytes, " bytes of data at offset ", t.offset, " of the data section (file offset ",
                    data_start, " + ", t.offset, ") inside the file, got a file of ", c.size(), " bytes"));
  c.seek(data_start + t.offset);
  std::vector<double> out;
  out.reserve(static_cast<size_t>(t.dims[0]));
  for (uint64_t i = 0; i < t.dims[0]; ++i) {
    const uint64_t raw = c.uint(static_cast<unsigned>(element), what);
    const double v = t.type == kGgmlF32 ? static_cast<double>(std::bit_cast<float>(static_cast<uint32_t>(raw)))
                                        : static_cast<double>(detail::half_to_float(static_cast<uint16_t>(raw)));
    if (!std::isfinite(v) || !(v > 0.0)) throw Error(cat(what, "[", i, "]: expected a finite number > 0, got ", v));
    out.push_back(v);
  }
  return out;
}

// ---- from metadata to specs ---------------------------------------------------------------------

struct Factors {
  std::vector<double> short_factor, long_factor;  // per-pair divisors; empty when none
  std::string source;                             // which tensor(s)
};

// The llama.cpp RoPE of one layer kind, as a ropekit scaling. `factor` is rope.scaling.factor (1 when
// none), `attn` rope.scaling.attn_factor.
struct ScalingInput {
  std::string type;                // none | linear | yarn | longrope
  double factor = 1.0;
  double attn = 1.0;
  std::optional<int64_t> original;  // n_ctx_orig_yarn
  const Factors* factors = nullptr;
};

Scaling divisors_scaling(const std::vector<double>& short_div, const std::vector<double>& long_div, double factor,
                         double attn, int64_t original) {
  scaling::LongRope l;
  for (double d : short_div) l.short_factor.push_back(d * factor);
  for (double d : long_div) l.long_factor.push_back(d * factor);
  l.original_max = original;
  l.factor = 1.0;
  l.attention_factor = attn;
  return l;
}

class Builder {
 public:
  Builder(const Meta& m, GgufRopeInfo& info) : m_(m), info_(info) {}

  void note(std::string s) { info_.notes.push_back(std::move(s)); }

  std::string key(const std::string& suffix) const { return m_.key(suffix); }

  [[noreturn]] void missing(const std::string& suffix, const std::string& expected) const {
    throw Error(cat(key(suffix), ": expected ", expected, ", got nothing (the key is missing)"));
  }

  int64_t context_or(const std::optional<int64_t>& original, const std::string& why) const {
    if (original) return *original;
    if (info_.context_length) return *info_.context_length;
    missing("rope.scaling.original_context_length", "an integer > 0 (or " + key("context_length") + ") for " + why);
  }

  Scaling make(const ScalingInput& in, int64_t pairs) {
    const Factors& f = *in.factors;
    const bool has_divisors = !f.short_factor.empty();
    if (in.type == "yarn") {
      if (has_divisors)
        throw Error(cat(f.source, ": expected no per-pair RoPE factors with ", key("rope.scaling.type"),
                        " yarn (ropekit has no family that both divides by per-pair factors and ramps as YaRN), got ",
                        f.short_factor.size(), " factors"));
      scaling::Yarn y;
      y.factor = in.factor;
      y.original_max = context_or(in.original, "yarn");
      if (auto v = m_.real("rope.scaling.yarn_beta_fast", 0.0, true)) y.beta_fast = *v;
      if (auto v = m_.real("rope.scaling.yarn_beta_slow", 0.0, true)) y.beta_slow = *v;
      y.truncate = true;  // ggml_rope_yarn_corr_dims floors and ceils
      // yarn_ext_factor: negative means "not set" (1 for YaRN), as llama.cpp's context reads it.
      double ext = 1.0;
      if (auto v = m_.real("rope.scaling.yarn_ext_factor", -std::numeric_limits<double>::max(), false))
        ext = *v < 0 ? 1.0 : *v;
      y.extrapolation_factor = ext;
      y.attention_multiplier = in.attn;
      if (ext != 0.0) {
        const double log_mul = m_.real("rope.scaling.yarn_log_multiplier", 0.0, false).value_or(0.0);
        if (log_mul != 0.0) {
          // llama.cpp: mscale 1 (deepseek2: yarn_log_multiplier itself unless 1), mscale_all_dim = yarn_log_multiplier.
          y.mscale = m_.arch() == "deepseek2" && log_mul != 1.0 ? log_mul : 1.0;
          y.mscale_all_dim = log_mul;
          note(cat("yarn attention factor: get_mscale(factor, ", *y.mscale, ") / get_mscale(factor, ", log_mul,
                   ") from ", key("rope.scaling.yarn_log_multiplier"), ", as llama.cpp computes it"));
        }
        if (m_.has("rope.scaling.yarn_attn_factor"))
          note(key("rope.scaling.yarn_attn_factor") +
               " is not applied: llama.cpp recomputes the YaRN attention factor when yarn_ext_factor != 0");
      } else {
        y.attention_factor = m_.real("rope.scaling.yarn_attn_factor", 0.0, true).value_or(1.0);
        note("yarn_ext_factor 0: pure interpolation, attention factor yarn_attn_factor x attn_factor (llama.cpp)");
      }
      return y;
    }
    for (const char* k : {"rope.scaling.yarn_ext_factor", "rope.scaling.yarn_attn_factor", "rope.scaling.yarn_beta_fast",
                          "rope.scaling.yarn_beta_slow", "rope.scaling.yarn_log_multiplier"})
      if (m_.has(k)) note(cat(key(k), " is not applied: rope.scaling.type is ", in.type, ", not yarn"));
    const double factor = in.type == "none" ? 1.0 : in.factor;
    if (has_divisors) {
      if (static_cast<int64_t>(f.short_factor.size()) != pairs)
        throw Error(cat(f.source, ": expected ", pairs, " values (rotary_dim / 2 of these layers), got ",
                        f.short_factor.size()));
      const bool same = f.short_factor == f.long_factor;
      const int64_t original = same ? context_or(in.original, f.source) : context_or(in.original, "LongRoPE factors");
      return divisors_scaling(f.short_factor, f.long_factor, factor, in.attn, original);
    }
    if (in.attn != 1.0) {
      // Linear or none with an attention factor: uniform divisors carry both exactly.
      const std::vector<double> ones(static_cast<size_t>(pairs), 1.0);
      note(cat(key("rope.scaling.attn_factor"), " ", in.attn, " with ", in.type,
               " scaling: written as longrope with every factor ", factor, " and attention factor ", in.attn));
      return divisors_scaling(ones, ones, factor, in.attn, context_or(in.original, "the attention factor"));
    }
    if (factor != 1.0) return scaling::Linear{factor};
    return scaling::None{};
  }

 private:
  const Meta& m_;
  GgufRopeInfo& info_;
};

RopeSpec make_spec(SpecParams params, const std::string& what) {
  try {
    return RopeSpec(std::move(params));
  } catch (const Error& e) {
    throw Error(cat(what, ": ", std::string(e.what()).substr(std::string("ropekit: ").size())));
  }
}

struct Parsed {
  uint32_t version = 0;
  std::string arch;
  uint64_t alignment = kDefaultAlignment;
};

GgufRopeInfo read_gguf(Source& source) {
  Cursor c(source);
  Parsed p;
  // Header.
  if (c.size() < 4) throw Error(cat("GGUF header: expected the magic \"GGUF\", got a file of ", c.size(), " bytes"));
  const uint32_t magic = c.u32("GGUF header magic");
  if (magic != kMagic) {
    std::string got(4, '\0');
    for (int i = 0; i < 4; ++i) got[i] = static_cast<char>((magic >> (8 * i)) & 0xff);
    throw Error(cat("GGUF header: expected the magic \"GGUF\", got ", shown_text(got), " (not a GGUF file)"));
  }
  p.version = c.u32("GGUF header version");
  if (p.version != 2 && p.version != 3) {
    const uint32_t swapped = byteswap32(p.version);
    if (swapped >= 1 && swapped <= 3)
      throw Error(cat("GGUF header version: expected a little-endian GGUF file (version 2 or 3), got a big-endian one "
                      "(version ", swapped, ")"));
    if (p.version == 1)
      throw Error("GGUF header version: expected version 2 or 3, got version 1 (32-bit counts, not supported)");
    throw Error(cat("GGUF header version: expected 2 or 3, got ", p.version));
  }
  const uint64_t tensor_count = c.u64("GGUF header tensor count");
  const uint64_t kv_count = c.u64("GGUF header key/value count");
  if (kv_count > kMaxGgufKvCount)
    throw Error(cat("GGUF header key/value count: expected at most ", kMaxGgufKvCount, ", got ", kv_count));
  // A pair takes at least 8 (key length) + 4 (type) + 1 bytes.
  if (kv_count > c.left() / 13)
    throw Error(cat("GGUF header key/value count: expected at most ", c.left() / 13, " pairs in the ", c.left(),
                    " bytes left, got ", kv_count, " (a truncated file?)"));
  if (tensor_count > kMaxGgufTensorCount)
    throw Error(cat("GGUF header tensor count: expected at most ", kMaxGgufTensorCount, ", got ", tensor_count));

  auto kv_what = [](uint64_t i, const std::string& key) { return cat("GGUF key/value ", i, " (", shown_text(key), ")"); };

  // Pass 1: general.architecture and general.alignment; everything else skipped.
  const uint64_t kv_start = c.pos();
  bool have_arch = false, have_alignment = false;
  for (uint64_t i = 0; i < kv_count; ++i) {
    const std::string key = c.string(kMaxGgufStringBytes, cat("GGUF key/value ", i, " key"));
    const std::string what = kv_what(i, key);
    const uint32_t type = c.u32(what + " type");
    if (type >= kTypeCount) throw Error(cat(what, ": expected a value type 0..12, got ", type));
    if (key == "general.architecture") {
      if (have_arch) throw Error(cat("general.architecture: expected one value, got a second at key/value ", i));
      if (type != kString) {
        const Value v = read_value(c, type, what);
        throw Error(cat("general.architecture: expected a string, got ", v.shown()));
      }
      p.arch = c.string(kMaxGgufStringBytes, what);
      have_arch = true;
    } else if (key == "general.alignment") {
      if (have_alignment) throw Error(cat("general.alignment: expected one value, got a second at key/value ", i));
      const Value v = read_value(c, type, what);
      const std::string expected = cat("a uint32 power of two in [1, ", kMaxGgufAlignment, "]");
      if (type != kU32 || v.integer <= 0 || static_cast<uint64_t>(v.integer) > kMaxGgufAlignment ||
          !std::has_single_bit(static_cast<uint64_t>(v.integer)))
        throw Error(cat("general.alignment: expected ", expected, ", got ", v.shown()));
      p.alignment = static_cast<uint64_t>(v.integer);
      have_alignment = true;
    } else {
      skip_value(c, type, what);
    }
  }
  const uint64_t tensors_start = c.pos();
  if (!have_arch) throw Error("general.architecture: expected a string, got nothing (the key is missing)");
  if (p.arch.empty()) throw Error("general.architecture: expected a non-empty string, got \"\"");

  // Pass 2: the {arch}.* keys RoPE needs.
  Meta m(p.arch);
  c.seek(kv_start);
  for (uint64_t i = 0; i < kv_count; ++i) {
    const std::string key = c.string(kMaxGgufStringBytes, cat("GGUF key/value ", i, " key"));
    const std::string what = kv_what(i, key);
    const uint32_t type = c.u32(what + " type");
    if (m.wanted(key)) {
      Value v = read_value(c, type, key);
      v.kv_index = i;
      m.add(key, std::move(v));
    } else {
      skip_value(c, type, what);
    }
  }

  // Tensor infos: only the RoPE tensors are kept.
  if (tensor_count > c.left() / 32)  // name length 8 + n_dims 4 + one dim 8 + type 4 + offset 8
    throw Error(cat("GGUF header tensor count: expected at most ", c.left() / 32, " tensor infos in the ", c.left(),
                    " bytes left, got ", tensor_count, " (a truncated file?)"));
  RopeTensors rope;
  for (uint64_t i = 0; i < tensor_count; ++i) {
    const std::string name = c.string(kMaxGgufStringBytes, cat("GGUF tensor info ", i, " name"));
    const std::string what = cat("GGUF tensor info ", i, " (", shown_text(name), ")");
    TensorInfo t;
    t.name = name;
    t.n_dims = c.u32(what + " dimension count");
    if (t.n_dims < 1 || t.n_dims > kMaxDims)
      throw Error(cat(what, ": expected 1 to ", kMaxDims, " dimensions, got ", t.n_dims));
    for (uint32_t d = 0; d < t.n_dims; ++d) {
      t.dims[d] = c.u64(what + " dimension");
      if (t.dims[d] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        throw Error(cat(what, ": expected dimensions < 2^63, got ", t.dims[d]));
    }
    t.type = c.u32(what + " type");
    t.offset = c.u64(what + " offset");
    t.present = true;
    if (TensorInfo* slot = rope.slot(name)) {
      if (slot->present) throw Error(cat(name, ": expected one tensor of that name, got a second at tensor info ", i));
      *slot = t;
    }
  }
  // The data section starts at the next multiple of the alignment.
  const uint64_t info_end = c.pos();
  const uint64_t data_start = info_end + (p.alignment - info_end % p.alignment) % p.alignment;
  (void)tensors_start;

  // ---- the spec ----
  GgufRopeInfo info{RopeSpec([] { SpecParams placeholder; placeholder.head_dim = 2; return placeholder; }()), std::nullopt,
                    p.arch, p.version, std::nullopt, std::nullopt, std::nullopt, std::nullopt, {}, {}};
  Builder b(m, info);
  const GgufRopeMode mode = detail::gguf_rope_mode(p.arch);
  if (mode == GgufRopeMode::unknown)
    throw Error(cat("general.architecture: expected an architecture in llama.cpp's RoPE table (llama, qwen2, gemma3, phi3, "
                    "deepseek2, ...), got ", shown_text(p.arch)));
  if (mode == GgufRopeMode::none)
    throw Error(cat("general.architecture: expected an architecture that uses RoPE, got ", shown_text(p.arch),
                    " (llama.cpp rotates nothing for it)"));

  info.context_length = m.integer("context_length", 1);
  const std::vector<int64_t> heads = m.integers("attention.head_count", 0);
  const std::vector<int64_t> heads_kv = m.integers("attention.head_count_kv", 0);
  if (!heads.empty()) info.head_count = heads[0];
  info.head_count_kv = !heads_kv.empty() ? std::optional<int64_t>(heads_kv[0]) : info.head_count;
  if (heads.size() > 1 && std::any_of(heads.begin(), heads.end(), [&](int64_t h) { return h != heads[0]; }))
    b.note(cat(m.key("attention.head_count"), " differs per layer: heads shows layer 0's"));
  if (heads_kv.size() > 1 && std::any_of(heads_kv.begin(), heads_kv.end(), [&](int64_t h) { return h != heads_kv[0]; }))
    b.note(cat(m.key("attention.head_count_kv"), " differs per layer: heads shows layer 0's"));
  if (auto w = m.integer("attention.sliding_window", 0)) info.sliding_window = *w;
  if (m.has("rope.dimension_sections")) {
    const std::vector<int64_t> sections = m.integers("rope.dimension_sections", 0);
    info.dimension_sections = sections;
  }
  const bool sections_set = std::any_of(info.dimension_sections.begin(), info.dimension_sections.end(),
                                        [](int64_t s) { return s != 0; });

  // Head and rotary dimensions.
  int64_t head_dim = 0;
  if (auto k = m.integer("attention.key_length", 1)) {
    head_dim = *k;
  } else {
    const auto embedding = m.integer("embedding_length", 1);
    if (!embedding || heads.empty() || heads[0] <= 0)
      b.missing("attention.key_length", "an integer > 0 (or " + m.key("embedding_length") + " and " +
                                            m.key("attention.head_count") + ")");
    if (*embedding % heads[0] != 0)
      throw Error(cat(m.key("embedding_length"), ": expected a multiple of ", m.key("attention.head_count"), " (", heads[0],
                      ") when ", m.key("attention.key_length"), " is absent, got ", *embedding));
    head_dim = *embedding / heads[0];
  }
  int64_t rotary_dim = m.integer("rope.dimension_count", 1).value_or(head_dim);
  if (m.has("attention.kv_lora_rank")) {
    // MLA: q_pe / k_pe are their own tensors of rope.dimension_count values.
    head_dim = rotary_dim;
    b.note(cat("MLA (", m.key("attention.kv_lora_rank"), "): the rope slice is its own tensor, head_dim = rotary_dim = ",
               rotary_dim));
  }
  if (rotary_dim > head_dim)
    throw Error(cat(m.key("rope.dimension_count"), ": expected at most the head dimension (", head_dim, "), got ", rotary_dim));
  // Bounded before anything is sized by it: a hostile file could ask for billions of pairs.
  if (head_dim > kMaxHeadDim)
    throw Error(cat(m.has("attention.kv_lora_rank") ? m.key("rope.dimension_count")
                    : m.has("attention.key_length")   ? m.key("attention.key_length")
                                                      : m.key("embedding_length") + " / " + m.key("attention.head_count"),
                    ": expected a head dimension of at most ", kMaxHeadDim, ", got ", head_dim));
  if (rotary_dim % 2 != 0) throw Error(cat(m.key("rope.dimension_count"), ": expected an even number, got ", rotary_dim));
  if ((p.arch == "llama" || p.arch == "deci" || p.arch == "falcon" || p.arch == "llama-embed") && rotary_dim != head_dim)
    throw Error(cat(m.key("rope.dimension_count"), ": expected the head dimension (", head_dim, ") for ", p.arch,
                    ", as llama.cpp requires, got ", rotary_dim));

  // Pair style.
  Style style = Style::half;
  switch (mode) {
    case GgufRopeMode::norm:
      style = Style::interleaved;
      break;
    case GgufRopeMode::norm_or_mrope:
      style = sections_set ? Style::half : Style::interleaved;
      break;
    default:
      break;
  }
  const bool mrope = mode == GgufRopeMode::mrope || mode == GgufRopeMode::imrope ||
                     ((mode == GgufRopeMode::norm_or_mrope || mode == GgufRopeMode::neox_or_mrope) && sections_set);
  if (style == Style::interleaved) {
    b.note(cat("pair style interleaved: llama.cpp's normal RoPE for ", p.arch,
               ", pairs (2i, 2i+1) (for Llama-family models its converter permutes the q/k weights to match, so on "
               "the original HF weights this is HF's half style)"));
  }
  // llama.cpp's M-RoPE: sections t, h, w and a 4th (e) position; sector j of imrope takes h when
  // j % 3 == 1 and j < 3h, w when j % 3 == 2 and j < 3w, t when j % 3 == 0 and j < 3t, else e.
  // Without e (section 3 zero, t + h + w the pairs) and, interleaved, with every pair on t, h or w,
  // that is ropekit's MRope (HF's mapping); otherwise the spec stays the text RoPE.
  std::optional<MRope> mrope_map;
  if (mrope) {
    const auto& d = info.dimension_sections;
    const auto at = [&](size_t i) { return i < d.size() ? d[i] : int64_t{0}; };
    const bool interleaved = mode == GgufRopeMode::imrope;
    const int64_t pairs = rotary_dim / 2;
    bool exact = at(3) == 0 && at(0) >= 0 && at(1) >= 0 && at(2) >= 0 && at(0) + at(1) + at(2) == pairs;
    for (int64_t j = 0; exact && interleaved && j < pairs; ++j) {
      const bool hw = (j % 3 == 1 && j < 3 * at(1)) || (j % 3 == 2 && j < 3 * at(2));
      if (!hw && !(j % 3 == 0 && j < 3 * at(0))) exact = false;
    }
    std::string listed;
    for (size_t i = 0; i < d.size(); ++i) listed += cat(i ? ", " : "", d[i]);
    if (exact) {
      mrope_map = MRope{{at(0), at(1), at(2)}, interleaved};
      b.note(cat("M-RoPE", interleaved ? " (interleaved sections)" : "", " sections [", listed,
                 "]: the spec's mrope, positions with 3 axes (t, h, w)"));
    } else {
      b.note(cat("M-RoPE", interleaved ? " (interleaved sections)" : "", " sections [", listed,
                 "]: some pairs turn by llama.cpp's 4th position; the spec is the text RoPE (every section at the "
                 "same position)"));
    }
  }

  // Scaling parameters.
  const double base = m.real("rope.freq_base", 0.0, true).value_or(10000.0);
  ScalingInput in;
  in.type = m.text("rope.scaling.type").value_or("linear");
  if (in.type != "none" && in.type != "linear" && in.type != "yarn" && in.type != "longrope")
    throw Error(cat(m.key("rope.scaling.type"), ": expected one of none, linear, yarn, longrope, got string ",
                    shown_text(in.type)));
  std::optional<double> factor = m.real("rope.scaling.factor", 0.0, false);
  if (!factor) factor = m.real("rope.scale_linear", 0.0, false);
  in.factor = factor && *factor != 0.0 ? *factor : 1.0;  // llama.cpp: 0 or absent is no scaling
  if (in.type == "none" && in.factor != 1.0)
    b.note(cat("rope.scaling.type none: llama.cpp ignores rope.scaling.factor ", in.factor));
  in.attn = m.real("rope.scaling.attn_factor", 0.0, true).value_or(1.0);
  in.original = m.integer("rope.scaling.original_context_length", 1);
  if (m.has("rope.scaling.alpha")) b.note(cat(m.key("rope.scaling.alpha"), " is not applied"));

  // Per-pair divisors.
  const int64_t pairs = rotary_dim / 2;
  Factors factors;
  if (rope.freqs.present) {
    factors.short_factor = read_factors(c, rope.freqs, data_start, p.alignment, pairs);
    factors.long_factor = factors.short_factor;
    factors.source = kFreqs;
    b.note(cat(kFreqs, ": llama.cpp divides frequency i by rope_freqs[i] (Llama 3's llama3 scaling baked in by the "
                       "converter); written as longrope with short_factor = long_factor = rope_freqs",
               in.factor != 1.0 && in.type != "none" ? cat(" x rope.scaling.factor ", in.factor) : std::string(),
               ", attention factor ", in.attn));
    if (rope.long_factors.present || rope.short_factors.present)
      b.note(cat("rope_factors_long/short are not applied: llama.cpp uses ", kFreqs, " when both are present"));
  } else if (rope.long_factors.present || rope.short_factors.present) {
    if (!rope.long_factors.present || !rope.short_factors.present)
      throw Error(cat(rope.long_factors.present ? kShort : kLong, ": expected a tensor (", kLong, " and ", kShort,
                      " come together), got nothing"));
    factors.short_factor = read_factors(c, rope.short_factors, data_start, p.alignment, pairs);
    factors.long_factor = read_factors(c, rope.long_factors, data_start, p.alignment, pairs);
    factors.source = "rope_factors_long/short.weight";
    b.note(cat("LongRoPE factors: short up to ", b.context_or(in.original, "LongRoPE factors"),
               " tokens (original_context_length), long past it; attention factor ", in.attn,
               m.has("rope.scaling.attn_factor") ? std::string() : std::string(" (no rope.scaling.attn_factor: llama.cpp uses 1)")));
  } else if (in.type == "longrope") {
    throw Error(cat(m.key("rope.scaling.type"), " longrope: expected the tensors ", kLong, " and ", kShort, ", got neither"));
  }
  in.factors = &factors;

  SpecParams params;
  params.head_dim = head_dim;
  params.rotary_dim = rotary_dim;
  params.base = base;
  params.style = style;
  params.scaling = b.make(in, pairs);
  params.mrope = mrope_map;
  info.spec = make_spec(params, "gguf");

  // Sliding-window layers.
  const auto base_swa = m.real("rope.freq_base_swa", 0.0, true);
  const auto rotary_swa = m.integer("rope.dimension_count_swa", 1);
  const auto head_swa = m.integer("attention.key_length_swa", 1);
  if (base_swa || rotary_swa || head_swa || (info.sliding_window && *info.sliding_window > 0)) {
    // llama.cpp: gemma3 and gemma-embedding's sliding layers rotate with base 10000 and no frequency
    // scaling; every other architecture's with the full layers' scaling unless the file says otherwise.
    const bool plain = p.arch == "gemma3" || p.arch == "gemma-embedding";
    SpecParams s = params;
    s.head_dim = head_swa.value_or(head_dim);
    s.rotary_dim = rotary_swa.value_or(rotary_dim);
    if (s.rotary_dim > s.head_dim)
      throw Error(cat(m.key("rope.dimension_count_swa"), ": expected at most the head dimension (", s.head_dim, "), got ",
                      s.rotary_dim));
    if (s.head_dim > kMaxHeadDim)
      throw Error(cat(m.key("attention.key_length_swa"), ": expected a head dimension of at most ", kMaxHeadDim, ", got ",
                      s.head_dim));
    s.base = base_swa ? *base_swa : plain ? 10000.0 : base;
    ScalingInput swa = in;
    if (plain) {
      swa.type = "none";
      swa.factor = 1.0;
    }
    Factors none;
    if (plain) swa.factors = &none;
    std::vector<std::string> saved;
    saved.swap(info.notes);  // notes from the full layers' scaling are not repeated
    try {
      s.scaling = b.make(swa, s.rotary_dim / 2);
    } catch (const Error& e) {
      throw Error(cat("sliding-window layers: ", std::string(e.what()).substr(std::string("ropekit: ").size())));
    }
    saved.swap(info.notes);
    info.swa_spec = make_spec(s, "gguf sliding-window layers");
    b.note(cat("sliding-window layers: base ", s.base, base_swa ? " (rope.freq_base_swa)" : plain ? " (llama.cpp's default for "
                                                                                                    + p.arch + ")" : "",
               plain ? ", no frequency scaling (llama.cpp)" : ""));
  }
  return info;
}

}  // namespace

GgufRopeInfo gguf_rope_info_bytes(std::string_view bytes) {
  MemorySource source(bytes);
  return read_gguf(source);
}

GgufRopeInfo gguf_rope_info(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw Error(cat("GGUF path: expected a regular file, got \"", path.string(), "\"",
                    std::filesystem::exists(path, ec) ? " (not a regular file)" : " (no such file)"));
  const uint64_t size = std::filesystem::file_size(path, ec);
  if (ec) throw Error(cat("GGUF path: expected a readable file, got \"", path.string(), "\": ", ec.message()));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(cat("GGUF path: expected a readable file, got \"", path.string(), "\""));
  FileSource source(in, size);
  try {
    return read_gguf(source);
  } catch (const Error& e) {
    throw Error(cat(path.string(), ": ", std::string(e.what()).substr(std::string("ropekit: ").size())));
  }
}

RopeSpec spec_from_gguf(const std::filesystem::path& path) { return gguf_rope_info(path).spec; }

bool has_gguf_magic(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  if (!in.read(magic, 4)) return false;
  return std::memcmp(magic, "GGUF", 4) == 0;
}

}  // namespace ropekit
