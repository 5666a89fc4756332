"""ropekit.gguf_rope_info on GGUF files written by the `gguf` package's GGUFWriter (llama.cpp's own
writer): the RoPE keys and tensors llama.cpp's converter writes for several architectures and
scalings. Each spec's inverse frequencies and attention factor are checked against numpy
expectations computed here from llama.cpp's formulas (ggml's rope: theta_i = p * base^(-2i/d) /
freq_factor_i, YaRN's ramp over ggml_rope_yarn_corr_dims), and against ropekit's config.json reader
for the equivalent HF config where one exists."""
import json
import math
from pathlib import Path

import gguf
import numpy as np
import pytest

import ropekit
from ropekit import _C

CONFIGS = Path(__file__).resolve().parents[1] / "data" / "configs"


def plain_inv_freq(dim, base):
    # torch's arange(0, dim, 2).float() / dim exponent, as ropekit and HF use (float32 quotient).
    exponent = (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)).astype(np.float64)
    return float(base) ** -exponent


def yarn_inv_freq(dim, base, factor, original, beta_fast=32.0, beta_slow=1.0, ext=1.0):
    """ggml's rope_yarn: theta = interp * (1 - ramp_mix) + extrap * ramp_mix, ramp_mix = ramp * ext."""
    extrap = plain_inv_freq(dim, base)
    interp = extrap / factor

    def corr_dim(rotations):
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low = max(0.0, math.floor(corr_dim(beta_fast)))
    high = min(dim - 1.0, math.ceil(corr_dim(beta_slow)))
    y = (np.arange(dim // 2) - low) / max(0.001, high - low)
    ramp_mix = (1.0 - np.clip(y, 0.0, 1.0)) * ext
    return interp * (1.0 - ramp_mix) + extrap * ramp_mix


def llama3_rope_freqs(dim, base, factor, low_freq_factor, high_freq_factor, original):
    """llama.cpp's converter (LlamaModel.generate_extra_tensors): llama3 scaling as per-pair divisors."""
    freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    low_wavelen, high_wavelen = original / low_freq_factor, original / high_freq_factor
    out = []
    for f in freqs:
        wavelen = 2 * math.pi / f
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (original / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def write_gguf(path, arch, keys, tensors=(), endianess=gguf.GGUFEndian.LITTLE):
    w = gguf.GGUFWriter(str(path), arch, endianess=endianess)
    for method, *args in keys:
        getattr(w, method)(*args)
    w.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "a", "b"])
    w.add_array("tokenizer.ggml.scores", [0.0, 0.0, -1.0, -2.0])
    for name, values in tensors:
        w.add_tensor(name, values)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def config_spec(path_or_dict):
    d = json.loads(Path(path_or_dict).read_text()) if isinstance(path_or_dict, (str, Path)) else path_or_dict
    return _C.spec_from_hf_config_json(json.dumps(d))


def assert_rel(got, want, rtol):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=0)


def test_llama3_rope_freqs_are_per_pair_divisors(tmp_path):
    dim, base = 128, 500000.0
    freqs = llama3_rope_freqs(dim, base, 8.0, 1.0, 4.0, 8192)
    path = write_gguf(tmp_path / "llama.gguf", "llama", [
        ("add_context_length", 131072), ("add_embedding_length", 4096), ("add_head_count", 32),
        ("add_head_count_kv", 8), ("add_rope_freq_base", base), ("add_rope_dimension_count", dim),
    ], [("rope_freqs.weight", freqs)])
    info = ropekit.gguf_rope_info(path)
    assert info.architecture == "llama"
    assert (info.context_length, info.head_count, info.head_count_kv) == (131072, 32, 8)
    spec = info.spec
    assert spec.style == ropekit.Style.interleaved  # llama.cpp's normal RoPE (its converter permuted q/k)
    assert (spec.head_dim, spec.rotary_dim) == (128, 128)
    want = plain_inv_freq(dim, base) / freqs.astype(np.float64)
    for seq_len in (16, 8192, 1 << 20):  # per-pair divisors: the same at every length
        assert_rel(ropekit.inv_freq(spec, seq_len), want, 1e-15)
    assert ropekit.attention_factor(spec) == 1.0
    assert any("rope_freqs" in n for n in info.notes)
    # The equivalent HF config (llama3 rope_scaling): the same frequencies up to the float32 factors.
    hf = config_spec(CONFIGS / "llama3.1-8b.json")
    assert_rel(ropekit.inv_freq(spec, 4096), ropekit.inv_freq(hf, 4096), 2e-7)
    assert ropekit.attention_factor(hf) == 1.0
    # spec_from_gguf takes str and os.PathLike.
    assert ropekit.spec_from_gguf(str(path)).describe() == spec.describe()


@pytest.mark.parametrize("extra, ext, beta_fast, attn", [
    ([], 1.0, 32.0, 1.0),
    ([("add_rope_scaling_yarn_ext_factor", 0.5), ("add_rope_scaling_yarn_beta_fast", 16.0),
      ("add_rope_scaling_attn_factors", 1.25)], 0.5, 16.0, 1.25),
])
def test_qwen2_yarn(tmp_path, extra, ext, beta_fast, attn):
    dim, base, factor, original = 128, 1000000.0, 4.0, 32768
    path = write_gguf(tmp_path / "qwen2.gguf", "qwen2", [
        ("add_context_length", 32768), ("add_embedding_length", 3584), ("add_head_count", 28),
        ("add_head_count_kv", 4), ("add_rope_freq_base", base),
        ("add_rope_scaling_type", gguf.RopeScalingType.YARN), ("add_rope_scaling_factor", factor),
        ("add_rope_scaling_orig_ctx_len", original), *extra,
    ])
    spec = ropekit.spec_from_gguf(path)
    assert spec.style == ropekit.Style.half
    assert spec.scaling_name == "yarn"
    assert_rel(ropekit.inv_freq(spec), yarn_inv_freq(dim, base, factor, original, beta_fast=beta_fast, ext=ext), 1e-14)
    # llama.cpp: (0.1 ln(factor) + 1) in the kernel, times rope.scaling.attn_factor (a float32 key).
    assert ropekit.attention_factor(spec) == pytest.approx((0.1 * math.log(factor) + 1.0) * attn, rel=1e-7)
    if not extra:
        hf = config_spec(CONFIGS / "qwen2.5-7b-instruct-yarn.json")
        assert_rel(ropekit.inv_freq(spec), ropekit.inv_freq(hf), 1e-15)
        assert ropekit.attention_factor(spec) == pytest.approx(ropekit.attention_factor(hf), rel=1e-15)


def test_phi3_longrope_factors(tmp_path):
    config = json.loads((CONFIGS / "phi3-mini-128k.json").read_text())
    short = np.array(config["rope_scaling"]["short_factor"], dtype=np.float32)
    long_ = np.array(config["rope_scaling"]["long_factor"], dtype=np.float32)
    original, context, dim = 4096, 131072, 96
    attn = math.sqrt(1 + math.log(context / original) / math.log(original))
    path = write_gguf(tmp_path / "phi3.gguf", "phi3", [
        ("add_context_length", context), ("add_embedding_length", 3072), ("add_head_count", 32),
        ("add_head_count_kv", 32), ("add_rope_freq_base", 10000.0), ("add_rope_dimension_count", dim),
        ("add_rope_scaling_type", gguf.RopeScalingType.LONGROPE), ("add_rope_scaling_orig_ctx_len", original),
        ("add_rope_scaling_attn_factors", attn),
    ], [("rope_factors_long.weight", long_), ("rope_factors_short.weight", short)])
    spec = ropekit.spec_from_gguf(path)
    assert spec.style == ropekit.Style.half
    plain = plain_inv_freq(dim, 10000.0)
    assert_rel(ropekit.inv_freq(spec, original), plain / short.astype(np.float64), 1e-15)
    assert_rel(ropekit.inv_freq(spec, original + 1), plain / long_.astype(np.float64), 1e-15)
    assert ropekit.attention_factor(spec) == float(np.float32(attn))
    hf = config_spec(CONFIGS / "phi3-mini-128k.json")
    for seq_len in (original, context):
        assert_rel(ropekit.inv_freq(spec, seq_len), ropekit.inv_freq(hf, seq_len), 2e-7)
    assert ropekit.attention_factor(spec) == pytest.approx(ropekit.attention_factor(hf), rel=1e-7)


@pytest.mark.parametrize("swa_base", [None, 20000.0])
def test_gemma3_sliding_layers(tmp_path, swa_base):
    keys = [("add_context_length", 131072), ("add_embedding_length", 5376), ("add_head_count", 32),
            ("add_head_count_kv", 16), ("add_key_length", 128), ("add_sliding_window", 1024),
            ("add_rope_freq_base", 1000000.0), ("add_rope_scaling_type", gguf.RopeScalingType.LINEAR),
            ("add_rope_scaling_factor", 8.0)]
    if swa_base:
        keys.append(("add_rope_freq_base_swa", swa_base))
    info = ropekit.gguf_rope_info(write_gguf(tmp_path / "gemma3.gguf", "gemma3", keys))
    assert info.sliding_window == 1024
    assert info.spec.style == ropekit.Style.half
    assert_rel(ropekit.inv_freq(info.spec), plain_inv_freq(128, 1e6) / 8.0, 1e-15)
    swa = info.swa_spec
    assert swa is not None and swa.scaling_name == "none"  # llama.cpp: gemma3's sliding layers never scale
    assert_rel(ropekit.inv_freq(swa), plain_inv_freq(128, swa_base or 10000.0), 1e-15)
    # The equivalent HF config (legacy Gemma 3 keys): layer 5 is full attention, the others sliding.
    config = {"hidden_size": 5376, "num_attention_heads": 32, "head_dim": 128, "model_type": "gemma3_text",
              "num_hidden_layers": 6, "rope_theta": 1e6, "rope_scaling": {"rope_type": "linear", "factor": 8.0},
              "rope_local_base_freq": swa_base or 10000.0}
    model = _C.hf_config_info_json(json.dumps(config)).model
    full, sliding = model.layer(5).spec, model.layer(0).spec
    assert model.layer(5).layer_type == "full_attention" and model.layer(0).layer_type == "sliding_attention"
    assert_rel(ropekit.inv_freq(info.spec), ropekit.inv_freq(full), 1e-15)
    assert_rel(ropekit.inv_freq(swa), ropekit.inv_freq(sliding), 1e-15)


@pytest.mark.parametrize("method", ["add_rope_scaling_factor", "add_rope_scale_linear"])
def test_linear(tmp_path, method):
    keys = [("add_context_length", 4096), ("add_embedding_length", 4096), ("add_head_count", 32),
            ("add_rope_freq_base", 10000.0), ("add_rope_dimension_count", 128)]
    w_keys = keys + ([("add_rope_scaling_type", gguf.RopeScalingType.LINEAR)] if method == "add_rope_scaling_factor" else [])
    path = tmp_path / "linear.gguf"
    w = gguf.GGUFWriter(str(path), "mistral3")
    for m, *a in w_keys:
        getattr(w, m)(*a)
    if method == "add_rope_scaling_factor":
        w.add_rope_scaling_factor(2.0)
    else:  # the older key, written by hand: {arch}.rope.scale_linear
        w.add_float32("mistral3.rope.scale_linear", 2.0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    spec = ropekit.spec_from_gguf(path)
    assert spec.scaling_name == "linear"
    assert spec.style == ropekit.Style.interleaved
    assert_rel(ropekit.inv_freq(spec), plain_inv_freq(128, 10000.0) / 2.0, 1e-15)
    hf = config_spec({"hidden_size": 4096, "num_attention_heads": 32,
                      "rope_scaling": {"rope_type": "linear", "factor": 2.0}})
    assert_rel(ropekit.inv_freq(spec), ropekit.inv_freq(hf), 1e-15)


def test_deepseek2_mla_rope_slice(tmp_path):
    # convert_hf_to_gguf's DeepseekV2Model: yarn_log_multiplier = 0.1 * mscale_all_dim.
    path = write_gguf(tmp_path / "ds.gguf", "deepseek2", [
        ("add_context_length", 163840), ("add_embedding_length", 7168), ("add_head_count", 128),
        ("add_key_length", 192), ("add_kv_lora_rank", 512), ("add_rope_dimension_count", 64),
        ("add_rope_freq_base", 10000.0), ("add_rope_scaling_type", gguf.RopeScalingType.YARN),
        ("add_rope_scaling_factor", 40.0), ("add_rope_scaling_orig_ctx_len", 4096),
        ("add_rope_scaling_yarn_log_mul", 0.1 * 1.0),
    ])
    spec = ropekit.spec_from_gguf(path)
    assert (spec.head_dim, spec.rotary_dim) == (64, 64)
    assert spec.style == ropekit.Style.interleaved
    assert_rel(ropekit.inv_freq(spec), yarn_inv_freq(64, 10000.0, 40.0, 4096), 1e-14)
    assert ropekit.attention_factor(spec) == pytest.approx(1.0, rel=1e-12)
    hf = config_spec(CONFIGS / "deepseek-v2-lite.json")
    assert hf.style == spec.style


def test_hostile_and_unsupported_files(tmp_path):
    good = write_gguf(tmp_path / "good.gguf", "qwen2", [
        ("add_context_length", 4096), ("add_key_length", 64), ("add_head_count", 4)],
        [("rope_freqs.weight", np.full(32, 2.0, dtype=np.float32))])
    data = good.read_bytes()
    assert ropekit.gguf_rope_info_bytes(data).spec.scaling_name == "longrope"
    for n in range(0, len(data), 7):
        with pytest.raises(ValueError, match="expected"):
            ropekit.gguf_rope_info_bytes(data[:n])
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) - 8])
    with pytest.raises(ValueError, match=str(cut)):
        ropekit.gguf_rope_info(cut)
    big = write_gguf(tmp_path / "big.gguf", "qwen2", [("add_context_length", 4096), ("add_key_length", 64)],
                     endianess=gguf.GGUFEndian.BIG)
    with pytest.raises(ValueError, match="got a big-endian one"):
        ropekit.gguf_rope_info(big)
    no_rope = write_gguf(tmp_path / "gpt2.gguf", "gpt2", [("add_context_length", 1024)])
    with pytest.raises(ValueError, match="uses RoPE, got \"gpt2\""):
        ropekit.spec_from_gguf(no_rope)
    with pytest.raises(ValueError, match="regular file"):
        ropekit.gguf_rope_info(tmp_path)
    with pytest.raises(TypeError):
        ropekit.gguf_rope_info_bytes("not bytes")
