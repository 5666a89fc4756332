"""Query scales and softmax-scale factors beside RoPE, against transformers itself.

transformers' attention modules run on the CPU (random weights, the real configs' RoPE and scaling
fields, small hidden sizes); the query they hand to the attention function is captured and compared
with ropekit's: apply_query_scale on Llama 4's NoPE layers (attn_temperature_tuning), apply_rope
with query_scale= on Ministral 3 (llama_4_scaling_beta), both at positions where the scale steps.
The MLA families' softmax scale (yarn_apply_mscale) is compared with LayerRope.softmax_scale_factor.
"""
from __future__ import annotations

import copy
import importlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import ropekit

transformers = pytest.importorskip("transformers")

CONFIGS = Path(__file__).resolve().parents[1] / "data" / "configs"
CAPTURED = []


def _capture(module, query, key, value, attention_mask, **kwargs):
    CAPTURED.append((module.layer_idx, query.detach().clone()))
    b, h, s, _ = query.shape
    return torch.zeros(b, s, h, value.shape[-1]), None


transformers.AttentionInterface.register("ropekit_capture", _capture)


class OffsetCache:
    """Stands for a KV cache that already holds `offset` tokens (Llama 4 reads its length)."""

    def __init__(self, offset):
        self.offset = offset

    def get_seq_length(self, layer_idx=0):
        return self.offset

    def update(self, key, value, layer_idx, *args, **kwargs):
        return key, value


def small_text_config(name, **overrides):
    full = json.loads((CONFIGS / f"{name}.json").read_text())
    tc = copy.deepcopy(transformers.AutoConfig.for_model(**full).get_text_config())
    tc.hidden_size, tc.num_attention_heads, tc.num_key_value_heads = 64, 2, 1
    for key, value in overrides.items():
        setattr(tc, key, value)
    tc._attn_implementation = "ropekit_capture"
    return full, tc


ATTENTION = {"llama4_text": "llama4.modeling_llama4.Llama4TextAttention",
             "ministral3": "ministral3.modeling_ministral3.Ministral3Attention"}


def attention_module(tc, layer_idx):
    """One layer's attention of the model, random weights (seeded)."""
    path, cls = ATTENTION[tc.model_type].rsplit(".", 1)
    modeling = importlib.import_module(f"transformers.models.{path}")
    torch.manual_seed(layer_idx + 7)
    return getattr(modeling, cls)(tc, layer_idx).eval()


def q_heads(attention, hidden, head_dim):
    b, s, _ = hidden.shape
    return attention.q_proj(hidden).view(b, s, -1, head_dim)


def rope_bound(positions):
    # HF forms its angles in fp32 (|angle| x 2^-24 per angle, inv_freq <= 1); ropekit in float64.
    return 1e-5 + 4.0 * float(max(positions)) * 2.0**-24 * 5.0


@pytest.mark.parametrize("offset", [0, 8185, 3 * 8192 - 5])
def test_llama4_nope_temperature_matches_transformers(offset):
    full, tc = small_text_config("llama4-scout-17b-16e", use_qk_norm=False)
    layers = ropekit.hf_config_info_json(json.dumps(full)).model
    nope = next(i for i, layer in enumerate(layers.layers) if layer.spec is None)
    rope = layers.first_rope_layer
    assert layers.layer(nope).query_scale == ropekit.QueryScale(1.0, tc.attn_scale, tc.floor_scale, 1)
    assert layers.layer(rope).query_scale is None
    s = 9
    hidden = torch.randn(1, s, tc.hidden_size, generator=torch.Generator().manual_seed(offset))
    positions = torch.arange(offset, offset + s)
    rotary = transformers.models.llama4.modeling_llama4.Llama4TextRotaryEmbedding(config=tc)
    for index in (nope, rope):
        attention = attention_module(tc, index)
        CAPTURED.clear()
        with torch.no_grad():
            attention(hidden, rotary(hidden, positions[None]), None, past_key_values=OffsetCache(offset))
            q = q_heads(attention, hidden, tc.head_dim).contiguous()
        (layer_idx, want), = CAPTURED
        assert layer_idx == index
        want = want.transpose(1, 2)
        layer = layers.layer(index)
        if layer.spec is None:
            got = ropekit.apply_query_scale(q.numpy(), query_scale=layer.query_scale, positions=offset)
            t = np.array([layer.query_scale.at(int(p)) for p in positions])
            if offset:  # the window holds a step: t changes inside it
                assert len(set(t.round(12))) == 2
            err = np.abs(got - want.numpy()) / np.abs(want.numpy()).clip(1e-30)
            assert err.max() <= 4 * 2.0**-24, f"NoPE layer {index}: worst relative error {err.max():.3g}"
        else:
            got = ropekit.apply_rope(q.numpy(), spec=layer.spec, positions=offset)
            assert np.abs(got - want.numpy()).max() <= rope_bound(positions)


@pytest.mark.parametrize("offset", [0, 16380, 2 * 16384 - 3])
def test_ministral3_llama4_scaling_matches_transformers(offset):
    full, tc = small_text_config("ministral3-8b")
    layer = ropekit.hf_config_info_json(json.dumps(full)).model.layer(0)
    beta = tc.rope_parameters["llama_4_scaling_beta"]
    length = tc.rope_parameters["original_max_position_embeddings"]
    assert layer.query_scale == ropekit.QueryScale(1.0, beta, length, 0)
    s = 7
    hidden = torch.randn(1, s, tc.hidden_size, generator=torch.Generator().manual_seed(offset + 1))
    positions = torch.arange(offset, offset + s)
    modeling = transformers.models.ministral3.modeling_ministral3
    # HF's own function, over the window: ropekit's t at each position within float32 rounding.
    hf_scale = modeling.get_llama_4_attn_scale(positions[None], beta, length).flatten().double()
    ours = torch.tensor([layer.query_scale.at(int(p)) for p in positions], dtype=torch.float64)
    assert torch.allclose(hf_scale, ours, rtol=2e-7, atol=0)
    rotary = modeling.Ministral3RotaryEmbedding(config=tc)
    attention = attention_module(tc, 0)
    CAPTURED.clear()
    with torch.no_grad():
        attention(hidden, rotary(hidden, positions[None]), None, positions[None])
        q = q_heads(attention, hidden, tc.head_dim).contiguous()
        k = attention.k_proj(hidden).view(1, s, -1, tc.head_dim).contiguous()
    (_, want), = CAPTURED
    want = want.transpose(1, 2).numpy()
    got_q, got_k = ropekit.apply_rope(q.numpy(), k.numpy(), spec=layer.spec, positions=offset,
                                      query_scale=layer.query_scale)
    plain_q, plain_k = ropekit.apply_rope(q.numpy(), k.numpy(), spec=layer.spec, positions=offset)
    np.testing.assert_array_equal(got_k, plain_k)  # k is not scaled
    # The fused scale is t per token: within a few float32 roundings (of the largest term) of
    # rotate-then-scale, which rounds the rotation and the product separately.
    t = ours.numpy()[None, :, None, None]
    assert np.abs(got_q - plain_q * t).max() <= 4 * 2.0**-24 * np.abs(plain_q * t).max()
    if offset:
        assert len(set(ours.numpy().round(12))) == 2  # the window holds a step
    # ropekit rounds q x t once; HF rounds t to q's dtype, then the product (fp32 here).
    assert np.abs(got_q - want).max() <= rope_bound(positions) * float(ours.max())


def mla_config(model_type, mscale_all_dim):
    rope = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0, "original_max_position_embeddings": 4096,
            "beta_fast": 32.0, "beta_slow": 1.0, "mscale": mscale_all_dim, "mscale_all_dim": mscale_all_dim}
    return {"model_type": model_type, "hidden_size": 64, "num_attention_heads": 2, "num_key_value_heads": 2,
            "num_hidden_layers": 1, "intermediate_size": 64, "moe_intermediate_size": 32, "vocab_size": 64,
            "q_lora_rank": 32, "kv_lora_rank": 16, "qk_rope_head_dim": 8, "qk_nope_head_dim": 16, "v_head_dim": 16,
            "max_position_embeddings": 163840, "rope_parameters": rope, "rope_interleave": True}


def hf_scaling(config):
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**config))
    return next(m.scaling for n, m in model.named_modules() if n.endswith("self_attn"))


@pytest.mark.parametrize("model_type", ["deepseek_v2", "deepseek_v3", "glm4_moe_lite", "minicpm3", "youtu"])
@pytest.mark.parametrize("mscale_all_dim", [1.0, 0.707])
def test_mla_softmax_scale_factor_matches_transformers(model_type, mscale_all_dim):
    config = mla_config(model_type, mscale_all_dim)
    plain = copy.deepcopy(config)
    plain["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0}
    want = hf_scaling(config) / hf_scaling(plain)
    layer = ropekit.hf_config_info_json(json.dumps(config)).model.layer(0)
    assert layer.softmax_scale_factor == pytest.approx(want, rel=1e-14)
    assert layer.softmax_scale_factor == pytest.approx((0.1 * mscale_all_dim * math.log(40.0) + 1.0) ** 2, rel=1e-14)
    assert layer.query_scale is None
    assert ropekit.hf_config_info_json(json.dumps(plain)).model.layer(0).softmax_scale_factor == 1.0


def test_query_scale_errors_name_the_field():
    full = json.loads((CONFIGS / "ministral3-8b.json").read_text())
    del full["text_config"]["rope_parameters"]["original_max_position_embeddings"]
    with pytest.raises(ValueError, match="original_max_position_embeddings: expected an integer > 0"):
        ropekit.hf_config_info_json(json.dumps(full))
    with pytest.raises(ValueError, match="query_scale.length: expected an integer > 0"):
        ropekit.QueryScale(1.0, 0.1, 0, 0)
    q = np.ones((2, 3, 8), np.float32)
    with pytest.raises(ValueError, match="q: a tensor that requires grad is scaled out of place"):
        ropekit.apply_query_scale(torch.ones(2, 3, 8, requires_grad=True), query_scale=ropekit.QueryScale(1.0, 0.1, 4, 1),
                                  inplace=True)
    out = ropekit.apply_query_scale(q, query_scale=ropekit.QueryScale(2.0), positions=np.array([0, 5]))
    np.testing.assert_array_equal(out, 2 * q)
    np.testing.assert_array_equal(q, 1)  # not in place unless asked


SPEC = ropekit.RopeSpec(head_dim=16, rotary_dim=12)
QS = ropekit.QueryScale(1.25, 0.3, 3, 1)


@pytest.mark.parametrize("layout", ["bshd_ids", "bshd_offsets", "thd_packed", "thd_start"])
def test_torch_autograd_with_query_scale(layout):
    """Gradients (and second derivatives) through the rotation with a query scale, and the autograd
    form equal to the fused kernel's result."""
    gen = torch.Generator().manual_seed(5)
    kwargs = {}
    if layout.startswith("bshd"):
        q = torch.randn(2, 5, 3, 16, generator=gen, dtype=torch.float64)
        k = torch.randn(2, 5, 2, 16, generator=gen, dtype=torch.float64)
        if layout == "bshd_ids":
            kwargs["positions"] = torch.randint(0, 40, (10,), generator=gen)
        else:
            kwargs["offsets"] = torch.tensor([4, 17])
    else:
        q = torch.randn(9, 3, 16, generator=gen, dtype=torch.float64)
        k = torch.randn(9, 2, 16, generator=gen, dtype=torch.float64)
        if layout == "thd_packed":
            kwargs.update(cu_seqlens=torch.tensor([0, 4, 4, 9]), offsets=torch.tensor([2, 0, 11]))
        else:
            kwargs["positions"] = 6
    fused_q, fused_k = ropekit.apply_rope(q, k, spec=SPEC, query_scale=QS, **kwargs)  # no grad: the kernel's fusion
    qg, kg = q.clone().requires_grad_(), k.clone().requires_grad_()
    got_q, got_k = ropekit.apply_rope(qg, kg, spec=SPEC, query_scale=QS, **kwargs)
    # The kernel's f64 path multiplies by its fp32 coefficients (cos t, sin t): within 1e-6.
    assert (got_q - fused_q).abs().max() <= 1e-6 * fused_q.abs().max()
    torch.testing.assert_close(got_k, fused_k, rtol=0, atol=0)
    assert not torch.equal(fused_q, ropekit.apply_rope(q, spec=SPEC, **kwargs))  # the scale did something
    fn = lambda a, b: ropekit.apply_rope(a, b, spec=SPEC, query_scale=QS, **kwargs)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (qg, kg))
    assert torch.autograd.gradgradcheck(fn, (qg, kg))
    scale_only = lambda a: ropekit.apply_query_scale(a, query_scale=QS, **kwargs)  # noqa: E731
    assert torch.autograd.gradcheck(scale_only, (qg,))
    torch.testing.assert_close(scale_only(qg), ropekit.apply_query_scale(q, query_scale=QS, **kwargs), rtol=1e-15, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_torch_fused_query_scale_against_float64(dtype):
    gen = torch.Generator().manual_seed(9)
    q = torch.randn(3, 7, 4, 16, generator=gen).to(dtype)
    positions = torch.randint(0, 30, (21,), generator=gen)
    got = ropekit.apply_rope(q, spec=SPEC, positions=positions, query_scale=QS)
    want = ropekit.apply_rope(q.double(), spec=SPEC, positions=positions)
    t = torch.tensor([QS.at(int(p)) for p in positions], dtype=torch.float64).view(3, 7, 1, 1)
    want = want * t
    tol = {torch.float32: 1e-5, torch.bfloat16: 8e-3, torch.float16: 1e-3}[dtype]
    assert (got.double() - want).abs().max() <= tol * want.abs().max()
    inplace = q.clone()
    ropekit.apply_rope(inplace, spec=SPEC, positions=positions, query_scale=QS, inplace=True)
    assert torch.equal(inplace, got)


def test_torch_positions_forms_agree_with_the_kernel():
    """Every way to give positions: the autograd form (torch product) equals the kernel's fused
    result, and bad positions are refused on both paths."""
    gen = torch.Generator().manual_seed(11)
    q4 = torch.randn(2, 4, 2, 16, generator=gen, dtype=torch.float64)
    q3 = torch.randn(6, 2, 16, generator=gen, dtype=torch.float64)
    cases = [(q4, dict(positions=torch.tensor(9))), (q4, dict(positions=np.int64(3))),
             (q4, dict(positions=torch.arange(8) * 5)), (q4, dict(offsets=[1, 30])),
             (q3, dict(positions=torch.tensor(7))), (q3, dict(offsets=torch.tensor([12]))),
             (q3, dict(cu_seqlens=[0, 0, 6], offsets=[3, 20]))]
    for q, kwargs in cases:
        fused = ropekit.apply_query_scale(q, query_scale=QS, **kwargs)
        graded = ropekit.apply_query_scale(q.clone().requires_grad_(), query_scale=QS, **kwargs)
        torch.testing.assert_close(graded.detach(), fused, rtol=1e-15, atol=0, msg=str(kwargs))
        rot = ropekit.apply_rope(q, spec=SPEC, query_scale=QS, **kwargs)
        rot_grad = ropekit.apply_rope(q.clone().requires_grad_(), spec=SPEC, query_scale=QS, **kwargs)
        assert (rot_grad.detach() - rot).abs().max() <= 1e-6 * rot.abs().max(), kwargs
    for needs_grad in (False, True):
        with pytest.raises(ValueError, match=r"positions.ids\[1\]: expected in \[0"):
            ropekit.apply_query_scale(q3.clone().requires_grad_(needs_grad), query_scale=QS,
                                      positions=torch.tensor([0, -1, 2, 3, 4, 5]))
        with pytest.raises(ValueError, match="positions.cu_seqlens"):
            ropekit.apply_query_scale(q3.clone().requires_grad_(needs_grad), query_scale=QS, cu_seqlens=[0, 7, 6])
    written = q3.clone()
    version = written._version
    assert ropekit.apply_query_scale(written, query_scale=QS, inplace=True) is written
    assert written._version > version
    torch.testing.assert_close(written, ropekit.apply_query_scale(q3, query_scale=QS), rtol=0, atol=0)
