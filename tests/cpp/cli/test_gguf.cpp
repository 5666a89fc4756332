// GGUF metadata reader on hand-built byte buffers: llama.cpp's mapping of the keys and tensors, and
// one-line errors (never a crash) for hostile and truncated files.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ropekit/error.hpp"
#include "ropekit/frequencies.hpp"
#include "ropekit/gguf.hpp"

namespace {

using ropekit::gguf_rope_info_bytes;
using ::testing::HasSubstr;

// GGUF value types.
enum : uint32_t { U8 = 0, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 };

// Little-endian byte writer.
struct Bytes {
  std::string b;
  Bytes& u8(uint8_t v) { b.push_back(static_cast<char>(v)); return *this; }
  Bytes& u16(uint16_t v) { for (int i = 0; i < 2; ++i) u8(static_cast<uint8_t>(v >> (8 * i))); return *this; }
  Bytes& u32(uint32_t v) { for (int i = 0; i < 4; ++i) u8(static_cast<uint8_t>(v >> (8 * i))); return *this; }
  Bytes& u64(uint64_t v) { for (int i = 0; i < 8; ++i) u8(static_cast<uint8_t>(v >> (8 * i))); return *this; }
  Bytes& f32(float v) { return u32(std::bit_cast<uint32_t>(v)); }
  Bytes& f64(double v) { return u64(std::bit_cast<uint64_t>(v)); }
  Bytes& str(const std::string& s) { u64(s.size()); b += s; return *this; }
};

// One key/value pair: the key, the type and the already-encoded value.
struct Kv {
  std::string key;
  uint32_t type;
  std::string value;
};

Kv kv_str(const std::string& k, const std::string& v) { return {k, STRING, Bytes().str(v).b}; }
Kv kv_u32(const std::string& k, uint32_t v) { return {k, U32, Bytes().u32(v).b}; }
Kv kv_i32(const std::string& k, int32_t v) { return {k, I32, Bytes().u32(static_cast<uint32_t>(v)).b}; }
Kv kv_f32(const std::string& k, float v) { return {k, F32, Bytes().f32(v).b}; }
Kv kv_f64(const std::string& k, double v) { return {k, F64, Bytes().f64(v).b}; }
Kv kv_i32_array(const std::string& k, const std::vector<int32_t>& v) {
  Bytes x;
  x.u32(I32).u64(v.size());
  for (int32_t e : v) x.u32(static_cast<uint32_t>(e));
  return {k, ARRAY, x.b};
}
Kv kv_str_array(const std::string& k, const std::vector<std::string>& v) {
  Bytes x;
  x.u32(STRING).u64(v.size());
  for (const auto& e : v) x.str(e);
  return {k, ARRAY, x.b};
}

struct Tensor {
  std::string name;
  std::vector<uint64_t> dims;
  uint32_t type = 0;  // ggml type: 0 F32, 1 F16
  std::string data;   // raw bytes
  std::optional<uint64_t> offset;  // default: packed at the alignment
};

Tensor f32_tensor(const std::string& name, const std::vector<float>& values) {
  Bytes d;
  for (float v : values) d.f32(v);
  return {name, {values.size()}, 0, d.b, std::nullopt};
}

struct File {
  uint32_t version = 3;
  std::vector<Kv> kvs;
  std::vector<Tensor> tensors;
  uint64_t alignment = 32;
  std::optional<uint64_t> kv_count, tensor_count;  // override the header's counts

  std::string bytes() const {
    Bytes out;
    out.u32(0x46554747).u32(version);
    out.u64(tensor_count.value_or(tensors.size())).u64(kv_count.value_or(kvs.size()));
    for (const auto& kv : kvs) {
      out.str(kv.key).u32(kv.type);
      out.b += kv.value;
    }
    std::vector<uint64_t> offsets;
    uint64_t at = 0;
    for (const auto& t : tensors) {
      offsets.push_back(t.offset.value_or(at));
      at += (t.data.size() + alignment - 1) / alignment * alignment;
    }
    for (size_t i = 0; i < tensors.size(); ++i) {
      const auto& t = tensors[i];
      out.str(t.name).u32(static_cast<uint32_t>(t.dims.size()));
      for (uint64_t d : t.dims) out.u64(d);
      out.u32(t.type).u64(offsets[i]);
    }
    while (out.b.size() % alignment) out.u8(0);
    const size_t data_start = out.b.size();
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (tensors[i].offset) continue;  // placed by hand: the test writes nothing there
      out.b.resize(data_start + offsets[i], '\0');
      out.b += tensors[i].data;
    }
    return out.b;
  }
};

std::vector<Kv> llama_kvs() {
  return {kv_str("general.architecture", "llama"), kv_u32("llama.context_length", 8192),
          kv_u32("llama.embedding_length", 4096), kv_u32("llama.attention.head_count", 32),
          kv_u32("llama.attention.head_count_kv", 8), kv_f32("llama.rope.freq_base", 500000.0f),
          kv_u32("llama.rope.dimension_count", 128),
          kv_str_array("tokenizer.ggml.tokens", {"<s>", "</s>", "hello"})};
}

std::string error_of(const std::string& bytes) {
  try {
    (void)gguf_rope_info_bytes(bytes);
  } catch (const ropekit::Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Gguf, PlainLlamaIsInterleavedWithoutScaling) {
  File f;
  f.kvs = llama_kvs();
  const auto info = gguf_rope_info_bytes(f.bytes());
  EXPECT_EQ(info.architecture, "llama");
  EXPECT_EQ(info.version, 3u);
  EXPECT_EQ(info.spec.head_dim(), 128);
  EXPECT_EQ(info.spec.rotary_dim(), 128);
  EXPECT_DOUBLE_EQ(info.spec.base(), 500000.0);
  EXPECT_EQ(info.spec.style(), ropekit::Style::interleaved);
  EXPECT_EQ(info.spec.scaling_name(), "none");
  EXPECT_EQ(info.context_length, 8192);
  EXPECT_EQ(info.head_count, 32);
  EXPECT_EQ(info.head_count_kv, 8);
  EXPECT_FALSE(info.swa_spec);
  EXPECT_THAT(info.notes.at(0), HasSubstr("interleaved"));
}

TEST(Gguf, KeyOrderDoesNotMatterAndVersion2Reads) {
  File f;
  f.version = 2;
  f.kvs = llama_kvs();
  std::rotate(f.kvs.begin(), f.kvs.begin() + 3, f.kvs.end());  // general.architecture in the middle
  const auto info = gguf_rope_info_bytes(f.bytes());
  EXPECT_EQ(info.spec.head_dim(), 128);
  EXPECT_EQ(info.version, 2u);
}

TEST(Gguf, QwenIsHalfStyleAndYarnFollowsLlamaCpp) {
  File f;
  f.kvs = {kv_str("general.architecture", "qwen2"), kv_u32("qwen2.context_length", 131072),
           kv_u32("qwen2.embedding_length", 3584), kv_u32("qwen2.attention.head_count", 28),
           kv_f32("qwen2.rope.freq_base", 1000000.0f), kv_str("qwen2.rope.scaling.type", "yarn"),
           kv_f32("qwen2.rope.scaling.factor", 4.0f), kv_u32("qwen2.rope.scaling.original_context_length", 32768)};
  const auto info = gguf_rope_info_bytes(f.bytes());
  EXPECT_EQ(info.spec.style(), ropekit::Style::half);
  EXPECT_EQ(info.head_count_kv, 28);  // defaults to head_count
  const auto& y = std::get<ropekit::scaling::Yarn>(info.spec.scaling());
  EXPECT_EQ(y.factor, 4.0);
  EXPECT_EQ(y.original_max, 32768);
  EXPECT_EQ(y.beta_fast, 32.0);
  EXPECT_EQ(y.beta_slow, 1.0);
  EXPECT_EQ(y.extrapolation_factor, 1.0);
  EXPECT_NEAR(ropekit::attention_factor(info.spec), 0.1 * std::log(4.0) + 1.0, 1e-12);
}

TEST(Gguf, YarnOriginalContextDefaultsToContextLengthAndAttnFactorMultiplies) {
  File f;
  f.kvs = {kv_str("general.architecture", "qwen3"), kv_u32("qwen3.context_length", 40960),
           kv_u32("qwen3.attention.key_length", 128), kv_u32("qwen3.attention.head_count", 32),
           kv_str("qwen3.rope.scaling.type", "yarn"), kv_f32("qwen3.rope.scaling.factor", 2.0f),
           kv_f32("qwen3.rope.scaling.attn_factor", 1.5f), kv_f32("qwen3.rope.scaling.yarn_beta_fast", 16.0f),
           kv_f32("qwen3.rope.scaling.yarn_attn_factor", 7.0f)};
  const auto info = gguf_rope_info_bytes(f.bytes());
  const auto& y = std::get<ropekit::scaling::Yarn>(info.spec.scaling());
  EXPECT_EQ(y.original_max, 40960);
  EXPECT_EQ(y.beta_fast, 16.0);
  // llama.cpp recomputes the YaRN factor (yarn_attn_factor is overwritten) and multiplies attn_factor in.
  EXPECT_NEAR(ropekit::attention_factor(info.spec), (0.1 * std::log(2.0) + 1.0) * 1.5, 1e-12);
  bool noted = false;
  for (const auto& n : info.notes) noted |= n.find("yarn_attn_factor is not applied") != std::string::npos;
  EXPECT_TRUE(noted);
}

TEST(Gguf, DeepseekMlaRopeSliceAndLogMultiplier) {
  File f;
  f.kvs = {kv_str("general.architecture", "deepseek2"), kv_u32("deepseek2.context_length", 163840),
           kv_u32("deepseek2.attention.head_count", 128), kv_u32("deepseek2.attention.key_length", 192),
           kv_u32("deepseek2.attention.kv_lora_rank", 512), kv_u32("deepseek2.rope.dimension_count", 64),
           kv_f32("deepseek2.rope.freq_base", 10000.0f), kv_str("deepseek2.rope.scaling.type", "yarn"),
           kv_f32("deepseek2.rope.scaling.factor", 40.0f), kv_u32("deepseek2.rope.scaling.original_context_length", 4096),
           kv_f32("deepseek2.rope.scaling.yarn_log_multiplier", 0.1f)};
  const auto info = gguf_rope_info_bytes(f.bytes());
  EXPECT_EQ(info.spec.head_dim(), 64);
  EXPECT_EQ(info.spec.rotary_dim(), 64);
  EXPECT_EQ(info.spec.style(), ropekit::Style::interleaved);
  const auto& y = std::get<ropekit::scaling::Yarn>(info.spec.scaling());
  ASSERT_TRUE(y.mscale && y.mscale_all_dim);
  EXPECT_FLOAT_EQ(static_cast<float>(*y.mscale), 0.1f);  // deepseek2: mscale = yarn_log_multiplier unless 1
  EXPECT_NEAR(ropekit::attention_factor(info.spec), 1.0, 1e-12);
}

TEST(Gguf, RopeFreqsTensorIsExactPerPairDivisors) {
  std::vector<float> freqs(64);
  for (size_t i = 0; i < freqs.size(); ++i) freqs[i] = 1.0f + static_cast<float>(i) * 0.125f;
  File f;
  f.kvs = llama_kvs();
  f.tensors = {{"token_embd.weight", {4096, 10}, 8, "", uint64_t{0}}, f32_tensor("rope_freqs.weight", freqs)};
  f.tensors[1].offset = std::nullopt;
  f.tensors[0].offset = uint64_t{1} << 40;  // a tensor the reader never reads, far past the end of the file
  const auto info = gguf_rope_info_bytes(f.bytes());
  const auto& l = std::get<ropekit::scaling::LongRope>(info.spec.scaling());
  ASSERT_EQ(l.short_factor.size(), 64u);
  EXPECT_EQ(l.short_factor, l.long_factor);
  ASSERT_TRUE(l.attention_factor);
  EXPECT_EQ(*l.attention_factor, 1.0);
  const auto plain = ropekit::default_inv_freq(128, 500000.0);
  for (int64_t seq : {int64_t{16}, int64_t{1} << 20}) {
    const auto got = ropekit::inv_freq(info.spec, seq);
    for (size_t i = 0; i < 64; ++i) EXPECT_DOUBLE_EQ(got[i], plain[i] / freqs[i]) << i;
  }
}

TEST(Gguf, LinearFactorFoldsIntoRopeFreqsAndOldKeyName) {
  File f;
  f.kvs = llama_kvs();
  f.kvs.push_back(kv_f32("llama.rope.scale_linear", 2.0f));
  EXPECT_EQ(std::get<ropekit::scaling::Linear>(gguf_rope_info_bytes(f.bytes()).spec.scaling()).factor, 2.0);
  f.tensors = {f32_tensor("rope_freqs.weight", std::vector<float>(64, 3.0f))};
  const auto folded = gguf_rope_info_bytes(f.bytes());
  const auto& l = std::get<ropekit::scaling::LongRope>(folded.spec.scaling());
  EXPECT_EQ(l.short_factor[5], 6.0);
  // type none: the factor is ignored, as llama.cpp does.
  f.tensors.clear();
  f.kvs.push_back(kv_str("llama.rope.scaling.type", "none"));
  EXPECT_EQ(gguf_rope_info_bytes(f.bytes()).spec.scaling_name(), "none");
}

TEST(Gguf, AttentionFactorWithoutScalingIsCarriedExactly) {
  File f;
  f.kvs = llama_kvs();
  f.kvs.push_back(kv_f32("llama.rope.scaling.attn_factor", 1.25f));
  const auto info = gguf_rope_info_bytes(f.bytes());
  EXPECT_EQ(ropekit::attention_factor(info.spec), 1.25);
  const auto got = ropekit::inv_freq(info.spec, 1 << 20);
  EXPECT_EQ(got, ropekit::default_inv_freq(128, 500000.0));
}

TEST(Gguf, LongRopeFactorsAndF16) {
  std::vector<float> short_f(48, 1.0f), long_f(48);
  for (size_t i = 0; i < long_f.size(); ++i) long_f[i] = 1.0f + static_cast<float>(i);
  File f;
  f.kvs = {kv_str("general.architecture", "phi3"), kv_u32("phi3.context_length", 131072),
           kv_u32("phi3.embedding_length", 3072), kv_u32("phi3.attention.head_count", 32),
           kv_u32("phi3.rope.dimension_count", 96), kv_u32("phi3.rope.scaling.original_context_length", 4096),
           kv_f32("phi3.rope.scaling.attn_factor", 1.1902380714238083f), kv_str("phi3.rope.scaling.type", "longrope")};
  // rope_factors_long in F16 (1.0 + i is exact in half precision).
  Bytes half;
  for (float v : long_f) {
    const uint32_t bits = std::bit_cast<uint32_t>(v);
    half.u16(static_cast<uint16_t>(((bits >> 16) & 0x8000) | ((((bits >> 23) & 0xff) - 112) << 10) | ((bits >> 13) & 0x3ff)));
  }
  f.tensors = {f32_tensor("rope_factors_short.weight", short_f), {"rope_factors_long.weight", {48}, 1, half.b, std::nullopt}};
  const auto info = gguf_rope_info_bytes(f.bytes());
  EXPECT_EQ(info.spec.style(), ropekit::Style::half);
  const auto& l = std::get<ropekit::scaling::LongRope>(info.spec.scaling());
  EXPECT_EQ(l.original_max, 4096);
  EXPECT_EQ(l.long_factor[47], 48.0);
  EXPECT_EQ(l.short_factor[47], 1.0);
  EXPECT_FLOAT_EQ(static_cast<float>(ropekit::attention_factor(info.spec)), 1.1902380714238083f);
  EXPECT_EQ(ropekit::inv_freq(info.spec, 4096), ropekit::default_inv_freq(96, 10000.0));
}

TEST(Gguf, GemmaSlidingLayersRotatePlain) {
  File f;
  f.kvs = {kv_str("general.architecture", "gemma3"), kv_u32("gemma3.context_length", 131072),
           kv_u32("gemma3.attention.key_length", 128), kv_u32("gemma3.attention.head_count", 32),
           kv_u32("gemma3.attention.head_count_kv", 16), kv_u32("gemma3.attention.sliding_window", 1024),
           kv_f32("gemma3.rope.freq_base", 1000000.0f), kv_str("gemma3.rope.scaling.type", "linear"),
           kv_f32("gemma3.rope.scaling.factor", 8.0f)};
  auto info = gguf_rope_info_bytes(f.bytes());
  EXPECT_EQ(std::get<ropekit::scaling::Linear>(info.spec.scaling()).factor, 8.0);
  ASSERT_TRUE(info.swa_spec);
  EXPECT_EQ(info.swa_spec->base(), 10000.0);
  EXPECT_EQ(info.swa_spec->scaling_name(), "none");
  EXPECT_EQ(info.swa_spec->style(), ropekit::Style::half);
  EXPECT_EQ(info.sliding_window, 1024);
  f.kvs.push_back(kv_f32("gemma3.rope.freq_base_swa", 20000.0f));
  EXPECT_EQ(gguf_rope_info_bytes(f.bytes()).swa_spec->base(), 20000.0);
}

TEST(Gguf, OtherArchitecturesKeepTheirScalingOnSlidingLayers) {
  File f;
  f.kvs = {kv_str("general.architecture", "gpt-oss"), kv_u32("gpt-oss.context_length", 131072),
           kv_u32("gpt-oss.attention.key_length", 64), kv_u32("gpt-oss.attention.head_count", 64),
           kv_u32("gpt-oss.attention.sliding_window", 128), kv_f32("gpt-oss.rope.freq_base", 150000.0f),
           kv_str("gpt-oss.rope.scaling.type", "yarn"), kv_f32("gpt-oss.rope.scaling.factor", 32.0f),
           kv_u32("gpt-oss.rope.scaling.original_context_length", 4096)};
  const auto info = gguf_rope_info_bytes(f.bytes());
  ASSERT_TRUE(info.swa_spec);
  EXPECT_EQ(info.swa_spec->describe(), info.spec.describe());
}

TEST(Gguf, MropeAndGlm4Styles) {
  File f;
  f.kvs = {kv_str("general.architecture", "qwen2vl"), kv_u32("qwen2vl.context_length", 32768),
           kv_u32("qwen2vl.embedding_length", 3584), kv_u32("qwen2vl.attention.head_count", 28),
           kv_i32_array("qwen2vl.rope.dimension_sections", {16, 24, 24, 0})};
  const auto info = gguf_rope_info_bytes(f.bytes());
  EXPECT_EQ(info.spec.style(), ropekit::Style::half);
  EXPECT_EQ(info.dimension_sections, (std::vector<int64_t>{16, 24, 24, 0}));
  ASSERT_TRUE(info.spec.mrope());  // t + h + w = 64 pairs, no 4th section: HF's chunked mapping
  EXPECT_EQ(info.spec.mrope()->sections, (std::array<int64_t, 3>{16, 24, 24}));
  EXPECT_FALSE(info.spec.mrope()->interleaved);
  // Interleaved (Qwen3-VL): [24, 20, 20] leaves pairs 61 and 62 to llama.cpp's 4th position, so the
  // spec stays the text RoPE; sections that put every pair on t, h or w map exactly.
  File q3;
  q3.kvs = {kv_str("general.architecture", "qwen3vl"), kv_u32("qwen3vl.context_length", 32768),
            kv_u32("qwen3vl.embedding_length", 4096), kv_u32("qwen3vl.attention.head_count", 32),
            kv_u32("qwen3vl.attention.key_length", 128), kv_i32_array("qwen3vl.rope.dimension_sections", {24, 20, 20, 0})};
  const auto q3_info = gguf_rope_info_bytes(q3.bytes());
  EXPECT_FALSE(q3_info.spec.mrope());
  q3.kvs.back() = kv_i32_array("qwen3vl.rope.dimension_sections", {22, 21, 21, 0});  // every pair on t, h or w
  const auto exact = gguf_rope_info_bytes(q3.bytes());
  ASSERT_TRUE(exact.spec.mrope());
  EXPECT_TRUE(exact.spec.mrope()->interleaved);
  File g;
  g.kvs = {kv_str("general.architecture", "glm4"), kv_u32("glm4.context_length", 32768),
           kv_u32("glm4.attention.key_length", 128), kv_u32("glm4.attention.head_count", 32),
           kv_u32("glm4.rope.dimension_count", 64)};
  EXPECT_EQ(gguf_rope_info_bytes(g.bytes()).spec.style(), ropekit::Style::interleaved);
  g.kvs.push_back(kv_i32_array("glm4.rope.dimension_sections", {8, 12, 12, 0}));
  EXPECT_EQ(gguf_rope_info_bytes(g.bytes()).spec.style(), ropekit::Style::half);
}

TEST(Gguf, PerLayerHeadCounts) {
  File f;
  f.kvs = {kv_str("general.architecture", "openelm"), kv_u32("openelm.context_length", 2048),
           kv_u32("openelm.attention.key_length", 64), kv_i32_array("openelm.attention.head_count", {12, 12, 16}),
           kv_i32_array("openelm.attention.head_count_kv", {3, 4, 4})};
  const auto info = gguf_rope_info_bytes(f.bytes());
  EXPECT_EQ(info.head_count, 12);
  EXPECT_EQ(info.head_count_kv, 3);
}

// ---- errors ----

TEST(GgufErrors, NotAGgufFile) {
  EXPECT_THAT(error_of(""), HasSubstr("expected the magic \"GGUF\", got a file of 0 bytes"));
  EXPECT_THAT(error_of("GGU"), HasSubstr("got a file of 3 bytes"));
  EXPECT_THAT(error_of("{\"hidden_size\": 1}"), HasSubstr("got \"{\\x22hi\" (not a GGUF file)"));
}

TEST(GgufErrors, VersionsAndEndianness) {
  File f;
  f.kvs = llama_kvs();
  std::string b = f.bytes();
  b[4] = 1;
  EXPECT_THAT(error_of(b), HasSubstr("version 1 (32-bit counts, not supported)"));
  b[4] = 7;
  EXPECT_THAT(error_of(b), HasSubstr("version: expected 2 or 3, got 7"));
  b[4] = 0;
  b[7] = 3;  // what a big-endian writer leaves
  EXPECT_THAT(error_of(b), HasSubstr("expected a little-endian GGUF file (version 2 or 3), got a big-endian one (version 3)"));
}

TEST(GgufErrors, EveryTruncationIsAnError) {
  File f;
  f.kvs = llama_kvs();
  f.kvs.push_back(kv_str("llama.rope.scaling.type", "linear"));
  f.tensors = {f32_tensor("rope_freqs.weight", std::vector<float>(64, 2.0f))};
  const std::string full = f.bytes();
  ASSERT_NO_THROW((void)gguf_rope_info_bytes(full));
  for (size_t n = 0; n < full.size(); ++n) {
    const std::string prefix = full.substr(0, n);
    try {
      (void)gguf_rope_info_bytes(prefix);
      ADD_FAILURE() << "a file cut to " << n << " of " << full.size() << " bytes was read";
    } catch (const ropekit::Error& e) {
      EXPECT_THAT(std::string(e.what()), ::testing::AnyOf(HasSubstr("expected"), HasSubstr("truncated"))) << n;
    }
  }
}

TEST(GgufErrors, CountsAndLengthsAreBoundedBeforeUse) {
  File f;
  f.kvs = llama_kvs();
  f.kv_count = uint64_t{1} << 62;
  EXPECT_THAT(error_of(f.bytes()), HasSubstr("key/value count: expected at most 1048576, got 4611686018427387904"));
  f.kv_count = 1000;  // under the limit, more than the bytes can hold
  EXPECT_THAT(error_of(f.bytes()), HasSubstr("(a truncated file?)"));
  f.kv_count.reset();
  f.tensor_count = uint64_t{1} << 40;
  EXPECT_THAT(error_of(f.bytes()), HasSubstr("tensor count: expected at most 16777216"));
  f.tensor_count = 1u << 20;
  EXPECT_THAT(error_of(f.bytes()), HasSubstr("tensor infos in the"));
  f.tensor_count.reset();

  // A key length of 2^63, and one just past the limit.
  File k;
  k.kvs = {{std::string(), U32, Bytes().u32(1).b}};
  std::string b = k.bytes();
  std::memcpy(b.data() + 24, Bytes().u64(uint64_t{1} << 63).b.data(), 8);
  EXPECT_THAT(error_of(b), HasSubstr("key: expected a string of at most 65536 bytes, got a length of 9223372036854775808"));
  k.kvs = {{std::string(65537, 'k'), U32, Bytes().u32(1).b}};
  EXPECT_THAT(error_of(k.bytes()), HasSubstr("got a length of 65537"));

  // A skipped string value and arrays whose sizes pass the end of the file.
  File s;
  s.kvs = llama_kvs();
  s.kvs.push_back({"general.name", STRING, Bytes().u64(uint64_t{1} << 60).b});
  EXPECT_THAT(error_of(s.bytes()), HasSubstr("\"general.name\")"));
  s.kvs.back() = {"tokenizer.ggml.scores", ARRAY, Bytes().u32(F32).u64(uint64_t{1} << 62).b};
  EXPECT_THAT(error_of(s.bytes()), HasSubstr("x 4 bytes of float32 values"));
  s.kvs.back() = {"tokenizer.ggml.merges", ARRAY, Bytes().u32(STRING).u64(uint64_t{1} << 61).b};
  EXPECT_THAT(error_of(s.bytes()), HasSubstr("strings (8 bytes each at least)"));
  s.kvs.back() = {"x.nested", ARRAY, Bytes().u32(ARRAY).u64(1).b};
  EXPECT_THAT(error_of(s.bytes()), HasSubstr("got an array of arrays"));
  s.kvs.back() = {"x.bad_type", 13, Bytes().u32(0).b};
  EXPECT_THAT(error_of(s.bytes()), HasSubstr("\"x.bad_type\"): expected a value type 0..12, got 13"));
  s.kvs.back() = {"x.bad_element", ARRAY, Bytes().u32(99).u64(1).b};
  EXPECT_THAT(error_of(s.bytes()), HasSubstr("expected an array element type 0..12, got 99"));
  // A read key's string value past the limit, and a read integer array past its limit.
  s.kvs.back() = {"llama.rope.scaling.type", STRING, Bytes().str(std::string(70000, 'y')).b};
  EXPECT_THAT(error_of(s.bytes()), HasSubstr("llama.rope.scaling.type: expected a string of at most 65536 bytes"));
  s.kvs.back() = kv_i32_array("llama.attention.head_count", std::vector<int32_t>(70000, 4));
  s.kvs.erase(s.kvs.begin() + 3);  // the scalar head_count
  EXPECT_THAT(error_of(s.bytes()), HasSubstr("llama.attention.head_count: expected an integer, or an array of at most 65536"));
}

TEST(GgufErrors, WrongTypesNameTheKey) {
  auto with = [](Kv extra, bool replace_base = true) {
    File f;
    f.kvs = llama_kvs();
    if (replace_base) f.kvs.erase(f.kvs.begin() + 5);  // llama.rope.freq_base
    f.kvs.push_back(std::move(extra));
    return error_of(f.bytes());
  };
  EXPECT_THAT(with(kv_str("llama.rope.freq_base", "500000")),
              HasSubstr("llama.rope.freq_base: expected a float32 or float64 > 0, got string \"500000\""));
  EXPECT_THAT(with(kv_u32("llama.rope.freq_base", 500000)), HasSubstr("got uint32 500000"));
  EXPECT_THAT(with(kv_f32("llama.rope.freq_base", -1.0f)), HasSubstr("> 0, got float32 -1"));
  EXPECT_THAT(with(kv_f32("llama.rope.freq_base", NAN)), HasSubstr("got float32 nan"));
  EXPECT_THAT(with(kv_f32("llama.context_length", 8192.0f), false),
              HasSubstr("llama.context_length: expected one value, got a second"));
  File g;
  g.kvs = llama_kvs();
  g.kvs[1] = kv_f32("llama.context_length", 8192.0f);
  EXPECT_THAT(error_of(g.bytes()), HasSubstr("llama.context_length: expected an integer in [1, 2^31), got float32 8192"));
  g.kvs[1] = kv_i32("llama.context_length", -5);
  EXPECT_THAT(error_of(g.bytes()), HasSubstr("got int32 -5"));
  g.kvs[1] = {"llama.context_length", U64, Bytes().u64(~uint64_t{0}).b};
  EXPECT_THAT(error_of(g.bytes()), HasSubstr("got uint64 > 2^63"));
  g = File{};
  g.kvs = llama_kvs();
  g.kvs[0] = kv_u32("general.architecture", 7);
  EXPECT_THAT(error_of(g.bytes()), HasSubstr("general.architecture: expected a string, got uint32 7"));
  g.kvs[0] = kv_str("general.name", "x");
  EXPECT_THAT(error_of(g.bytes()), HasSubstr("general.architecture: expected a string, got nothing"));
  g.kvs[0] = kv_str("general.architecture", "no-such-arch\x01");
  EXPECT_THAT(error_of(g.bytes()), HasSubstr("RoPE table (llama, qwen2, gemma3, phi3, deepseek2, ...), got \"no-such-arch\\x01\""));
  g.kvs[0] = kv_str("general.architecture", "gpt2");
  EXPECT_THAT(error_of(g.bytes()), HasSubstr("expected an architecture that uses RoPE, got \"gpt2\""));
  g.kvs[0] = kv_str("general.architecture", "llama");
  g.kvs.push_back(kv_str("llama.rope.scaling.type", "dynamic"));
  EXPECT_THAT(error_of(g.bytes()), HasSubstr("llama.rope.scaling.type: expected one of none, linear, yarn, longrope, got string \"dynamic\""));
}

TEST(GgufErrors, Dimensions) {
  File f;
  f.kvs = llama_kvs();
  f.kvs[6] = kv_u32("llama.rope.dimension_count", 64);
  EXPECT_THAT(error_of(f.bytes()), HasSubstr("llama.rope.dimension_count: expected the head dimension (128) for llama"));
  f.kvs[0] = kv_str("general.architecture", "llama");
  f.kvs[6] = kv_u32("llama.rope.dimension_count", 256);
  EXPECT_THAT(error_of(f.bytes()), HasSubstr("expected at most the head dimension (128), got 256"));
  File q;
  q.kvs = {kv_str("general.architecture", "qwen2"), kv_u32("qwen2.attention.key_length", 64),
           kv_u32("qwen2.rope.dimension_count", 33)};
  EXPECT_THAT(error_of(q.bytes()), HasSubstr("qwen2.rope.dimension_count: expected an even number, got 33"));
  q.kvs = {kv_str("general.architecture", "qwen2"), kv_u32("qwen2.embedding_length", 100),
           kv_u32("qwen2.attention.head_count", 3)};
  EXPECT_THAT(error_of(q.bytes()), HasSubstr("qwen2.embedding_length: expected a multiple of qwen2.attention.head_count (3)"));
  q.kvs = {kv_str("general.architecture", "qwen2")};
  EXPECT_THAT(error_of(q.bytes()), HasSubstr("qwen2.attention.key_length: expected an integer > 0 (or qwen2.embedding_length"));
  // Huge dimensions are refused before anything is sized by them (fuzz_gguf found an 3 GB allocation).
  q.kvs = {kv_str("general.architecture", "qwen2"), kv_u32("qwen2.attention.key_length", 1u << 30),
           kv_f32("qwen2.rope.scaling.attn_factor", 2.0f)};
  EXPECT_THAT(error_of(q.bytes()), HasSubstr("qwen2.attention.key_length: expected a head dimension of at most 65536, got 1073741824"));
  q.kvs = {kv_str("general.architecture", "deepseek2"), kv_u32("deepseek2.attention.key_length", 192),
           kv_u32("deepseek2.attention.kv_lora_rank", 512), kv_u32("deepseek2.rope.dimension_count", 1u << 20)};
  EXPECT_THAT(error_of(q.bytes()), HasSubstr("deepseek2.rope.dimension_count: expected a head dimension of at most 65536"));
  q.kvs = {kv_str("general.architecture", "gemma3"), kv_u32("gemma3.attention.key_length", 128),
           kv_u32("gemma3.attention.key_length_swa", 1u << 24)};
  EXPECT_THAT(error_of(q.bytes()), HasSubstr("gemma3.attention.key_length_swa: expected a head dimension of at most 65536"));
}

TEST(GgufErrors, RopeTensors) {
  auto file = [](Tensor t) {
    File f;
    f.kvs = llama_kvs();
    f.tensors = {std::move(t)};
    return f;
  };
  Tensor t = f32_tensor("rope_freqs.weight", std::vector<float>(64, 1.0f));
  t.type = 8;  // Q8_0
  EXPECT_THAT(error_of(file(t).bytes()), HasSubstr("rope_freqs.weight: expected ggml type F32 (0) or F16 (1), got type 8"));
  t = f32_tensor("rope_freqs.weight", std::vector<float>(32, 1.0f));
  EXPECT_THAT(error_of(file(t).bytes()), HasSubstr("expected 64 values (rope.dimension_count / 2), got 32"));
  t = f32_tensor("rope_freqs.weight", std::vector<float>(64, 1.0f));
  t.dims = {32, 2};
  EXPECT_THAT(error_of(file(t).bytes()), HasSubstr("expected a 1-D tensor, got dimension 1 of 2"));
  t.dims = {64, 1, 1, 1, 1};
  EXPECT_THAT(error_of(file(t).bytes()), HasSubstr("expected 1 to 4 dimensions, got 5"));
  t.dims = {~uint64_t{0}};
  EXPECT_THAT(error_of(file(t).bytes()), HasSubstr("expected dimensions < 2^63"));
  t.dims = {64};
  t.offset = 4;
  EXPECT_THAT(error_of(file(t).bytes()), HasSubstr("a multiple of general.alignment (32), got 4"));
  t.offset = uint64_t{1} << 62;
  EXPECT_THAT(error_of(file(t).bytes()), HasSubstr("rope_freqs.weight: expected its 256 bytes of data"));
  t.offset = ~uint64_t{0} - 31;  // data_start + offset overflows
  EXPECT_THAT(error_of(file(t).bytes()), HasSubstr("expected its 256 bytes of data"));
  std::vector<float> bad(64, 1.0f);
  bad[7] = 0.0f;
  EXPECT_THAT(error_of(file(f32_tensor("rope_freqs.weight", bad)).bytes()),
              HasSubstr("rope_freqs.weight[7]: expected a finite number > 0, got 0"));
  File two = file(f32_tensor("rope_freqs.weight", std::vector<float>(64, 1.0f)));
  two.tensors.push_back(two.tensors[0]);
  EXPECT_THAT(error_of(two.bytes()), HasSubstr("rope_freqs.weight: expected one tensor of that name, got a second"));
  File half = file(f32_tensor("rope_factors_long.weight", std::vector<float>(64, 1.0f)));
  EXPECT_THAT(error_of(half.bytes()), HasSubstr("rope_factors_short.weight: expected a tensor"));
  File longrope;
  longrope.kvs = llama_kvs();
  longrope.kvs.push_back(kv_str("llama.rope.scaling.type", "longrope"));
  EXPECT_THAT(error_of(longrope.bytes()), HasSubstr("longrope: expected the tensors rope_factors_long.weight and rope_factors_short.weight"));
  File yarn = file(f32_tensor("rope_freqs.weight", std::vector<float>(64, 1.0f)));
  yarn.kvs.push_back(kv_str("llama.rope.scaling.type", "yarn"));
  yarn.kvs.push_back(kv_f32("llama.rope.scaling.factor", 4.0f));
  EXPECT_THAT(error_of(yarn.bytes()), HasSubstr("rope_freqs.weight: expected no per-pair RoPE factors with llama.rope.scaling.type yarn"));
}

TEST(GgufErrors, Alignment) {
  for (uint32_t bad : {0u, 3u, 1u << 21}) {
    File f;
    f.kvs = llama_kvs();
    f.kvs.push_back(kv_u32("general.alignment", bad));
    EXPECT_THAT(error_of(f.bytes()), HasSubstr("general.alignment: expected a uint32 power of two in [1, 1048576]")) << bad;
  }
  File f;
  f.kvs = llama_kvs();
  f.kvs.push_back(kv_str("general.alignment", "64"));
  EXPECT_THAT(error_of(f.bytes()), HasSubstr("general.alignment: expected a uint32 power of two in [1, 1048576], got string \"64\""));
  // A good alignment moves the data section.
  File g;
  g.alignment = 64;
  g.kvs = llama_kvs();
  g.kvs.push_back(kv_u32("general.alignment", 64));
  g.tensors = {f32_tensor("token_embd.weight", std::vector<float>(3, 1.0f)),
               f32_tensor("rope_freqs.weight", std::vector<float>(64, 4.0f))};
  EXPECT_EQ(std::get<ropekit::scaling::LongRope>(gguf_rope_info_bytes(g.bytes()).spec.scaling()).short_factor[0], 4.0);
}

TEST(GgufFile, PathsAndMagic) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("ropekit_gguf_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path good = dir / "model.gguf";
  File f;
  f.kvs = llama_kvs();
  { std::ofstream(good, std::ios::binary) << f.bytes(); }
  EXPECT_TRUE(ropekit::has_gguf_magic(good));
  EXPECT_EQ(ropekit::spec_from_gguf(good).head_dim(), 128);
  const fs::path bad = dir / "bad.gguf";
  { std::ofstream(bad, std::ios::binary) << f.bytes().substr(0, 40); }
  try {
    (void)ropekit::gguf_rope_info(bad);
    ADD_FAILURE() << "a truncated file was read";
  } catch (const ropekit::Error& e) {
    EXPECT_THAT(std::string(e.what()), HasSubstr(bad.string() + ": "));
  }
  EXPECT_FALSE(ropekit::has_gguf_magic(dir / "missing.gguf"));
  EXPECT_FALSE(ropekit::has_gguf_magic(dir));
  EXPECT_THROW((void)ropekit::gguf_rope_info(dir), ropekit::Error);
  EXPECT_THROW((void)ropekit::gguf_rope_info(dir / "missing.gguf"), ropekit::Error);
  fs::remove_all(dir);
}

}  // namespace
