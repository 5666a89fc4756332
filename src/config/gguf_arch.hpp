#pragma once
// llama.cpp's RoPE mode per GGUF architecture name (general.architecture), as its
// llama_model_rope_type() assigns them. Facts taken from llama.cpp; the table is written here.
#include <string_view>

namespace ropekit::detail {

enum class GgufRopeMode {
  unknown,      // not in the table
  none,         // the architecture uses no RoPE
  norm,         // "normal": consecutive pairs (2i, 2i+1)
  neox,         // pairs (i, i + n_rot/2)
  mrope,        // M-RoPE (NeoX pairing, per-section positions)
  imrope,       // interleaved M-RoPE (NeoX pairing, sections interleaved)
  norm_or_mrope,  // glm4: M-RoPE when rope.dimension_sections is set, else normal
  neox_or_mrope,  // glm4moe, hunyuan_vl: M-RoPE when rope.dimension_sections is set, else NeoX
};

struct GgufArchRope {
  std::string_view name;
  GgufRopeMode mode;
};

inline constexpr GgufArchRope kGgufArchRope[] = {
    // no RoPE
    {"clip", GgufRopeMode::none}, {"gpt2", GgufRopeMode::none}, {"gptj", GgufRopeMode::none},
    {"mpt", GgufRopeMode::none}, {"refact", GgufRopeMode::none}, {"bloom", GgufRopeMode::none},
    {"mamba", GgufRopeMode::none}, {"mamba2", GgufRopeMode::none}, {"jamba", GgufRopeMode::none},
    {"jina-bert-v2", GgufRopeMode::none}, {"t5", GgufRopeMode::none}, {"t5encoder", GgufRopeMode::none},
    {"jais", GgufRopeMode::none}, {"rwkv6", GgufRopeMode::none}, {"rwkv6qwen2", GgufRopeMode::none},
    {"rwkv7", GgufRopeMode::none}, {"arwkv7", GgufRopeMode::none}, {"wavtokenizer-dec", GgufRopeMode::none},
    {"nemotron_h", GgufRopeMode::none}, {"nemotron_h_moe", GgufRopeMode::none}, {"kimi-linear", GgufRopeMode::none},
    // normal: consecutive pairs
    {"llama", GgufRopeMode::norm}, {"llada", GgufRopeMode::norm}, {"llama4", GgufRopeMode::norm},
    {"deci", GgufRopeMode::norm}, {"baichuan", GgufRopeMode::norm}, {"starcoder", GgufRopeMode::norm},
    {"internlm2", GgufRopeMode::norm}, {"minicpm", GgufRopeMode::norm}, {"xverse", GgufRopeMode::norm},
    {"command-r", GgufRopeMode::norm}, {"cohere2", GgufRopeMode::norm}, {"cohere2moe", GgufRopeMode::norm},
    {"olmo", GgufRopeMode::norm}, {"arctic", GgufRopeMode::norm}, {"deepseek", GgufRopeMode::norm},
    {"deepseek2", GgufRopeMode::norm}, {"deepseek2-ocr", GgufRopeMode::norm}, {"deepseek32", GgufRopeMode::norm},
    {"deepseek4", GgufRopeMode::norm}, {"plm", GgufRopeMode::norm}, {"chatglm", GgufRopeMode::norm},
    {"granite", GgufRopeMode::norm}, {"granitemoe", GgufRopeMode::norm}, {"granitehybrid", GgufRopeMode::norm},
    {"chameleon", GgufRopeMode::norm}, {"bailingmoe", GgufRopeMode::norm}, {"neo-bert", GgufRopeMode::norm},
    {"smollm3", GgufRopeMode::norm}, {"arcee", GgufRopeMode::norm}, {"ernie4_5", GgufRopeMode::norm},
    {"ernie4_5-moe", GgufRopeMode::norm}, {"mistral3", GgufRopeMode::norm}, {"eagle3", GgufRopeMode::norm},
    {"mistral4", GgufRopeMode::norm}, {"llama-embed", GgufRopeMode::norm}, {"maincoder", GgufRopeMode::norm},
    {"glm-dsa", GgufRopeMode::norm},
    // NeoX: pairs (i, i + n_rot/2)
    {"falcon", GgufRopeMode::neox}, {"falcon-h1", GgufRopeMode::neox}, {"grok", GgufRopeMode::neox},
    {"dbrx", GgufRopeMode::neox}, {"bert", GgufRopeMode::neox}, {"jina-bert-v3", GgufRopeMode::neox},
    {"modern-bert", GgufRopeMode::neox}, {"nomic-bert", GgufRopeMode::neox}, {"nomic-bert-moe", GgufRopeMode::neox},
    {"eurobert", GgufRopeMode::neox}, {"stablelm", GgufRopeMode::neox}, {"bitnet", GgufRopeMode::neox},
    {"qwen", GgufRopeMode::neox}, {"qwen2", GgufRopeMode::neox}, {"dream", GgufRopeMode::neox},
    {"qwen2moe", GgufRopeMode::neox}, {"qwen3", GgufRopeMode::neox}, {"qwen3moe", GgufRopeMode::neox},
    {"llada-moe", GgufRopeMode::neox}, {"rnd1", GgufRopeMode::neox}, {"olmo2", GgufRopeMode::neox},
    {"olmoe", GgufRopeMode::neox}, {"phi2", GgufRopeMode::neox}, {"phi3", GgufRopeMode::neox},
    {"phimoe", GgufRopeMode::neox}, {"plamo", GgufRopeMode::neox}, {"plamo2", GgufRopeMode::neox},
    {"plamo3", GgufRopeMode::neox}, {"gemma", GgufRopeMode::neox}, {"gemma2", GgufRopeMode::neox},
    {"gemma3", GgufRopeMode::neox}, {"gemma3n", GgufRopeMode::neox}, {"gemma4", GgufRopeMode::neox},
    {"gemma4-assistant", GgufRopeMode::neox}, {"gemma-embedding", GgufRopeMode::neox},
    {"starcoder2", GgufRopeMode::neox}, {"openelm", GgufRopeMode::neox}, {"gptneox", GgufRopeMode::neox},
    {"codeshell", GgufRopeMode::neox}, {"orion", GgufRopeMode::neox}, {"nemotron", GgufRopeMode::neox},
    {"exaone", GgufRopeMode::neox}, {"exaone4", GgufRopeMode::neox}, {"exaone-moe", GgufRopeMode::neox},
    {"minicpm3", GgufRopeMode::neox}, {"bailingmoe2", GgufRopeMode::neox}, {"dots1", GgufRopeMode::neox},
    {"hunyuan-moe", GgufRopeMode::neox}, {"jais2", GgufRopeMode::neox}, {"gpt-oss", GgufRopeMode::neox},
    {"hunyuan-dense", GgufRopeMode::neox}, {"hy_v3", GgufRopeMode::neox}, {"lfm2", GgufRopeMode::neox},
    {"lfm2moe", GgufRopeMode::neox}, {"smallthinker", GgufRopeMode::neox}, {"seed_oss", GgufRopeMode::neox},
    {"grovemoe", GgufRopeMode::neox}, {"apertus", GgufRopeMode::neox}, {"minimax-m2", GgufRopeMode::neox},
    {"cogvlm", GgufRopeMode::neox}, {"pangu-embedded", GgufRopeMode::neox}, {"afmoe", GgufRopeMode::neox},
    {"laguna", GgufRopeMode::neox}, {"qwen3next", GgufRopeMode::neox}, {"mimo2", GgufRopeMode::neox},
    {"step35", GgufRopeMode::neox}, {"talkie", GgufRopeMode::neox}, {"mellum", GgufRopeMode::neox},
    // M-RoPE
    {"qwen2vl", GgufRopeMode::mrope}, {"paddleocr", GgufRopeMode::mrope},
    {"qwen3vl", GgufRopeMode::imrope}, {"qwen3vlmoe", GgufRopeMode::imrope}, {"qwen35", GgufRopeMode::imrope},
    {"qwen35moe", GgufRopeMode::imrope},
    // M-RoPE only with dimension sections
    {"glm4", GgufRopeMode::norm_or_mrope}, {"glm4moe", GgufRopeMode::neox_or_mrope},
    {"hunyuan_vl", GgufRopeMode::neox_or_mrope},
};

inline GgufRopeMode gguf_rope_mode(std::string_view arch) {
  for (const auto& entry : kGgufArchRope)
    if (entry.name == arch) return entry.mode;
  return GgufRopeMode::unknown;
}

}  // namespace ropekit::detail
