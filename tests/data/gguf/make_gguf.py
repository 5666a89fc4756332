"""Writes the small GGUF files in this folder with the `gguf` package (pip install gguf), from the
config.json files in ../configs, with the RoPE keys and tensors llama.cpp's converter writes for
them (no weights, a three-token vocabulary). Run from anywhere: python tests/data/gguf/make_gguf.py

  llama3.1-8b.gguf        llama, rope_freqs from the llama3 rope_scaling (Llama 3.1's factors)
  qwen2.5-7b-yarn.gguf    qwen2, rope.scaling.type yarn, factor 4, original context 32768
  phi3-mini-128k.gguf     phi3, rope_factors_long/short, attn_factor sqrt(1 + ln 32 / ln 4096)
  gemma3-27b.gguf         gemma3, linear factor 8, sliding window 1024, freq_base_swa 10000
"""
import json
import math
from pathlib import Path

import gguf
import numpy as np

HERE = Path(__file__).resolve().parent
CONFIGS = HERE.parent / "configs"


def common(w: gguf.GGUFWriter, c: dict) -> None:
    w.add_context_length(c["max_position_embeddings"])
    w.add_embedding_length(c["hidden_size"])
    w.add_block_count(c.get("num_hidden_layers", 1))
    w.add_head_count(c["num_attention_heads"])
    w.add_head_count_kv(c.get("num_key_value_heads", c["num_attention_heads"]))
    w.add_rope_freq_base(c.get("rope_theta", 10000.0))
    w.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "hello"])


def llama3_rope_freqs(c: dict) -> np.ndarray:
    """convert_hf_to_gguf's LlamaModel: the llama3 factors as per-pair divisors of base^(-2i/d)."""
    r = c["rope_scaling"]
    dim = c["hidden_size"] // c["num_attention_heads"]
    freqs = 1.0 / (c["rope_theta"] ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    old = r["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / r["low_freq_factor"], old / r["high_freq_factor"]
    out = []
    for f in freqs:
        wavelen = 2 * math.pi / f
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(r["factor"])
        else:
            smooth = (old / wavelen - r["low_freq_factor"]) / (r["high_freq_factor"] - r["low_freq_factor"])
            out.append(1.0 / ((1 - smooth) / r["factor"] + smooth))
    return np.array(out, dtype=np.float32)


def write(name: str, arch: str, fill) -> None:
    w = gguf.GGUFWriter(HERE / name, arch)
    fill(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main() -> None:
    llama = json.loads((CONFIGS / "llama3.1-8b.json").read_text())

    def fill_llama(w):
        common(w, llama)
        w.add_rope_dimension_count(llama["hidden_size"] // llama["num_attention_heads"])
        w.add_tensor("rope_freqs.weight", llama3_rope_freqs(llama))

    write("llama3.1-8b.gguf", "llama", fill_llama)

    qwen = json.loads((CONFIGS / "qwen2.5-7b-instruct-yarn.json").read_text())

    def fill_qwen(w):
        common(w, qwen)
        r = qwen["rope_scaling"]
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(r["factor"])
        w.add_rope_scaling_orig_ctx_len(r["original_max_position_embeddings"])

    write("qwen2.5-7b-yarn.gguf", "qwen2", fill_qwen)

    phi = json.loads((CONFIGS / "phi3-mini-128k.json").read_text())

    def fill_phi(w):
        common(w, phi)
        r = phi["rope_scaling"]
        orig = phi["original_max_position_embeddings"]
        scale = phi["max_position_embeddings"] / orig
        w.add_rope_dimension_count(phi["hidden_size"] // phi["num_attention_heads"])
        w.add_rope_scaling_type(gguf.RopeScalingType.LONGROPE)
        w.add_rope_scaling_orig_ctx_len(orig)
        w.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(scale) / math.log(orig)))
        w.add_tensor("rope_factors_long.weight", np.array(r["long_factor"], dtype=np.float32))
        w.add_tensor("rope_factors_short.weight", np.array(r["short_factor"], dtype=np.float32))

    write("phi3-mini-128k.gguf", "phi3", fill_phi)

    def fill_gemma(w):
        w.add_context_length(131072)
        w.add_embedding_length(5376)
        w.add_block_count(62)
        w.add_head_count(32)
        w.add_head_count_kv(16)
        w.add_key_length(128)
        w.add_value_length(128)
        w.add_sliding_window(1024)
        w.add_rope_freq_base(1000000.0)
        w.add_rope_freq_base_swa(10000.0)
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(8.0)
        w.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "hello"])

    write("gemma3-27b.gguf", "gemma3", fill_gemma)


if __name__ == "__main__":
    main()
