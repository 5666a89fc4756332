"""Each layer's RoPE of today's models, against transformers itself.

For every config under tests/data/configs (real checkpoints' config.json), transformers builds the
model on the meta device (no weights, no downloads); each decoder layer's attention runs once on meta
tensors with the modeling module's rotation function wrapped, which tells which layers rotate. The
rotation itself is then compared on the CPU: the model's own rotary module makes cos/sin (per layer
type where it has several) and its own rotation function rotates random q and k at near and far
positions; ropekit rotates the same q and k with the spec its config reader gives that layer.
"""
from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import ropekit

transformers = pytest.importorskip("transformers")

CONFIGS = Path(__file__).resolve().parents[1] / "data" / "configs"
# The per-layer, NoPE and proportional models, and the 2025-26 flat ones.
MODELS = [
    "gemma3-27b", "gemma4-31b", "llama4-scout-17b-16e", "qwen3-8b", "qwen3-30b-a3b", "gpt-oss-20b", "phi4-mini",
    "ministral3-8b", "smollm3-3b", "cohere2-command-r7b", "qwen3-next-80b-a3b", "qwen2.5-vl-7b", "qwen3-vl-8b",
    "deepseek-v3",
]
# Models whose layers differ (labels must equal transformers' layer_types).
PER_LAYER = {"gemma3-27b", "gemma4-31b", "llama4-scout-17b-16e", "gpt-oss-20b", "smollm3-3b", "cohere2-command-r7b",
             "qwen3-next-80b-a3b"}
ROTATIONS = ("apply_rotary_pos_emb", "apply_rotary_emb", "apply_rotary_pos_emb_interleave")


def config_dict(name):
    return json.loads((CONFIGS / f"{name}.json").read_text())


def text_config(name):
    return transformers.AutoConfig.for_model(**config_dict(name)).get_text_config()


def meta_model(tc):
    with torch.device("meta"):
        try:
            return transformers.AutoModelForCausalLM.from_config(tc)
        except ValueError:  # a VL text config: the bare text model
            return transformers.AutoModel.from_config(tc)


def decoder_layers(model, tc):
    return next(m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == tc.num_hidden_layers)


def rotary_module(model):
    return next(m for n, m in model.named_modules() if n.endswith("rotary_emb"))


def takes_layer_type(rotary):
    return "layer_type" in inspect.signature(rotary.forward).parameters


def hf_layers_that_rotate(tc):
    """Which layers' attention calls the modeling module's rotation (transformers decides)."""
    model = meta_model(tc)
    layers = decoder_layers(model, tc)
    rotary = rotary_module(model)
    module = importlib.import_module(type(layers[0]).__module__)
    calls = []
    originals = {f: getattr(module, f) for f in ROTATIONS if hasattr(module, f)}
    assert originals, f"{module.__name__} has none of {ROTATIONS}"

    def recorder(fn):
        def wrapped(*args, **kwargs):
            calls.append(fn.__name__)
            return fn(*args, **kwargs)
        return wrapped

    x = torch.empty(1, 3, tc.hidden_size, device="meta")
    positions = torch.arange(3, device="meta")[None]
    out = []
    try:
        for name, fn in originals.items():
            setattr(module, name, recorder(fn))
        for i, layer in enumerate(layers):
            attention = getattr(layer, "self_attn", None)
            if attention is None:  # linear attention / state-space layers
                out.append(False)
                continue
            extra = (tc.layer_types[i],) if takes_layer_type(rotary) else ()
            kwargs = dict(hidden_states=x, position_embeddings=rotary(x, positions, *extra), attention_mask=None)
            params = inspect.signature(attention.forward).parameters
            if "position_ids" in params:
                kwargs["position_ids"] = positions
            if "shared_kv_states" in params:
                kwargs["shared_kv_states"] = {}
            calls.clear()
            attention(**kwargs)
            out.append(bool(calls))
    finally:
        for name, fn in originals.items():
            setattr(module, name, fn)
    return out


@pytest.mark.parametrize("name", MODELS)
def test_layers_with_rope_match_transformers(name):
    tc = text_config(name)
    model = ropekit.hf_config_info_json(json.dumps(config_dict(name))).model
    assert model.num_layers == tc.num_hidden_layers
    assert [layer.spec is not None for layer in model.layers] == hf_layers_that_rotate(tc)
    labels = [layer.layer_type for layer in model.layers]
    if name in PER_LAYER:
        assert "" not in labels and labels == list(tc.layer_types)
    elif getattr(tc, "layer_types", None) is not None and "" not in labels:
        assert labels == list(tc.layer_types)


# Families whose rotation function is not HF's usual apply_rotary_pos_emb(q, k, cos, sin) on
# (batch, heads, seq, head_dim). DeepSeek-V3's de-interleaving layout is test_deepseek_layouts.py's.
def hf_rotate(module, rotary, layer_type, q, k, positions):
    extra = (layer_type,) if takes_layer_type(rotary) else ()
    embeddings = rotary(q, positions[None], *extra)
    if hasattr(module, "apply_rotary_emb") and not hasattr(module, "apply_rotary_pos_emb"):  # Llama 4: complex
        q2, k2 = module.apply_rotary_emb(q.transpose(1, 2), k.transpose(1, 2), embeddings)
        return q2.transpose(1, 2), k2.transpose(1, 2)
    cos, sin = embeddings
    if next(iter(inspect.signature(module.apply_rotary_pos_emb).parameters)) == "x":  # Gemma 4: one tensor, (b, s, h, d)
        one = lambda x: module.apply_rotary_pos_emb(x.transpose(1, 2), cos, sin, unsqueeze_dim=2).transpose(1, 2)
        return one(q), one(k)
    return module.apply_rotary_pos_emb(q, k, cos, sin)


def cpu_rotary(tc, model):
    rotary = rotary_module(model)
    return type(rotary)(config=tc)


@pytest.mark.parametrize("name", [m for m in MODELS if m != "deepseek-v3"])
def test_rotation_per_layer_matches_transformers(name):
    tc = text_config(name)
    info = ropekit.hf_config_info_json(json.dumps(config_dict(name)))
    model = meta_model(tc)
    module = importlib.import_module(type(decoder_layers(model, tc)[0]).__module__)
    rotary = cpu_rotary(tc, model)
    original = tc.rope_parameters
    nested = isinstance(original, dict) and any(t in original for t in set(getattr(tc, "layer_types", None) or ()))
    context = tc.max_position_embeddings
    # Near positions, and far ones past the original context (dynamic / longrope switch there).
    positions = torch.tensor([0, 1, 7, 4095, 4096, context - 1, context + 5])
    gen = torch.Generator().manual_seed(1234)
    seen = set()
    comparisons = 0
    for i, layer in enumerate(info.model.layers):
        if layer.spec is None or (layer.layer_type, layer.spec) in seen:
            continue
        seen.add((layer.layer_type, layer.spec))
        spec = layer.spec
        q = torch.randn(1, 3, len(positions), spec.head_dim, generator=gen)
        k = torch.randn(1, 2, len(positions), spec.head_dim, generator=gen)
        want_q, want_k = hf_rotate(module, rotary, layer.layer_type if nested or takes_layer_type(rotary) else None,
                                   q.clone(), k.clone(), positions)
        got_q, got_k = ropekit.apply_rope(q.transpose(1, 2).contiguous(), k.transpose(1, 2).contiguous(), spec=spec,
                                          positions=positions)
        # HF forms its angles position x inv_freq in fp32 (ropekit in float64), so HF's error grows with
        # the position: about |angle| x 2^-24 per angle, inv_freq <= 1; ropekit's is below 1e-6.
        bound = (1e-5 + 4.0 * positions.double() * 2.0**-24 * 5.0).view(1, 1, -1, 1)
        for got, want in ((got_q.transpose(1, 2), want_q), (got_k.transpose(1, 2), want_k)):
            assert not torch.isnan(got).any()
            err = (got.double() - want.double()).abs()
            assert (err <= bound).all(), (
                f"{name} layer {i} ({layer.layer_type}): {spec.describe()}: worst {float((err / bound).max()):.2f} x bound")
            comparisons += 1
    assert comparisons >= 2


def test_proportional_inv_freq_equals_transformers():
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    tc = text_config("gemma4-31b")
    hf, attention = ROPE_INIT_FUNCTIONS["proportional"](tc.per_layer_config["full_attention"], None,
                                                         layer_type="full_attention")
    spec = ropekit.hf_config_info_json(json.dumps(config_dict("gemma4-31b"))).model.layer(5).spec
    assert spec.scaling_name == "proportional" and spec.head_dim == spec.rotary_dim == 512
    got = ropekit.inv_freq(spec).astype(np.float32)
    # HF raises base to fp32 exponents in fp32: within 1 ulp of ropekit's float64 value rounded.
    np.testing.assert_allclose(got, hf.numpy(), rtol=1.2e-7, atol=0)
    assert (got[64:] == 0).all() and (got[:64] > 0).all()
    assert ropekit.attention_factor(spec) == attention == 1.0


@pytest.mark.parametrize("fraction,factor,head_dim", [(0.25, 1.0, 512), (0.5, 2.0, 128), (1.0, 1.0, 64), (0.3, 1.0, 10)])
def test_proportional_any_fraction_equals_transformers(fraction, factor, head_dim):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    from transformers import LlamaConfig
    cfg = LlamaConfig(hidden_size=head_dim * 2, num_attention_heads=2, head_dim=head_dim,
                      rope_parameters={"rope_type": "proportional", "rope_theta": 1e6, "partial_rotary_factor": fraction,
                                       "factor": factor})
    hf, _ = ROPE_INIT_FUNCTIONS["proportional"](cfg, None)
    spec = ropekit.RopeSpec(head_dim, base=1e6, scaling=ropekit.Proportional(fraction, factor))
    np.testing.assert_allclose(ropekit.inv_freq(spec), hf.numpy().astype(np.float64), rtol=1.2e-7, atol=0)
    via_config = ropekit.hf_config_info_json(json.dumps(cfg.to_dict())).spec
    assert via_config == spec


def test_config_errors_name_the_field():
    base = {"model_type": "gemma3_text", "head_dim": 64, "num_attention_heads": 2, "num_hidden_layers": 2}
    with pytest.raises(ValueError, match=r"layer_types: expected a list of 2 strings"):
        ropekit.hf_config_info_json(json.dumps(dict(base, layer_types=["sliding_attention"])))
    with pytest.raises(ValueError, match=r"num_hidden_layers: expected an integer in \[1, 65536\], got 1000000000000000"):
        ropekit.hf_config_info_json(json.dumps(dict(base, num_hidden_layers=10**15)))
    with pytest.raises(ValueError, match=r"no_rope_layers\[1\]: expected 0 or 1"):
        ropekit.hf_config_info_json(json.dumps(dict(base, model_type="smollm3", no_rope_layers=[1, 2])))
    with pytest.raises(ValueError, match=r"rope_parameters.full_attention: expected an entry for every layer type"):
        ropekit.hf_config_info_json(json.dumps({
            "model_type": "llama", "head_dim": 64, "num_attention_heads": 2, "num_hidden_layers": 2,
            "layer_types": ["sliding_attention", "full_attention"],
            "rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}}))
    with pytest.raises(ValueError, match=r"rope_parameters.sliding_attention.rope_type: expected one of"):
        ropekit.hf_config_info_json(json.dumps(dict(base, layer_types=["sliding_attention", "full_attention"],
                                                    rope_parameters={"sliding_attention": {"rope_type": "nope"},
                                                                     "full_attention": {"rope_type": "default"}})))
