"""HuggingFace transformers models on ropekit's kernels: ``patch(model)`` and ``unpatch(model)``.

``patch`` reads the model's config into ropekit specs (one per layer type when ``rope_parameters``
is keyed by layer type, as Gemma 3's), checks each against what the model's own rotary module
computes, then routes the model's ``apply_rotary_pos_emb`` through ropekit's autograd function
(``ropekit.torch``; the custom op under ``torch.compile``). How it hooks in:

- each rotary module of the model (``*RotaryEmbedding``, holding ``inv_freq``) gets an instance
  ``forward`` that runs the original and tags the returned cos with the positions and the ropekit
  table of that call;
- the modeling module's global ``apply_rotary_pos_emb`` is replaced by a function that rotates
  with ropekit when its cos carries a tag and calls the original otherwise, so other models of the
  same family in the process (unpatched, or patched models' untagged calls) are unaffected.

Patch before compiling: a graph compiled earlier keeps the functions it traced.
"""
from __future__ import annotations

import json
import sys
import threading
import weakref

import torch

from . import _C
from . import torch as _rt

__all__ = ["patch", "unpatch", "is_patched", "spec_from_config", "model_rope"]

# Rows the table is built with; positions past them are computed in the kernel (same frequencies).
_TABLE_ROWS = 8192
_TAG = "_ropekit_rope"  # attribute of the cos tensor a patched rotary module returns
_STATE = "_ropekit_patch"  # attribute of a patched model

_lock = threading.Lock()
# Modeling modules whose apply_rotary_pos_emb is replaced: name -> (original, patched models). The
# replacement stays until the last of its models is unpatched (it is transparent to other models).
_replaced: dict[str, tuple] = {}


def _config_dict(config) -> dict:
    if isinstance(config, dict):
        return config
    text = getattr(config, "get_text_config", None)
    config = text() if callable(text) else config
    return json.loads(config.to_json_string(use_diff=False))


def model_rope(config) -> _C.ModelRope:
    """Each layer's RoPE of a transformers config (a PretrainedConfig or its dict), read by ropekit's
    config.json reader: ``.layer(i).spec`` is a RopeSpec, or None for a layer without RoPE."""
    return _C.hf_config_info_json(json.dumps(_config_dict(config))).model


def spec_from_config(config, layer_type: str | None = None) -> _C.RopeSpec | None:
    """The ropekit spec of a transformers config (a PretrainedConfig or its dict). ``layer_type``
    (a label of ``config.layer_types``) picks that type's RoPE, None where that type has none; without
    it, the spec of the first layer with RoPE."""
    info = _C.hf_config_info_json(json.dumps(_config_dict(config)))
    if layer_type is None:
        return info.spec
    layers = info.model.layers
    for layer in layers:
        if layer.layer_type == layer_type:
            return layer.spec
    raise ValueError(f"layer_type: expected one of {sorted({l.layer_type for l in layers})}, got {layer_type!r}")


def _rope_for(spec: _C.RopeSpec):
    return _rt.rope_of_table(_C.RopeTable(spec, _TABLE_ROWS))


def _rotary_modules(model):
    """(name, module, layer types) of each HF rotary module: one with an inv_freq buffer, or one
    per-layer-type buffer {type}_inv_freq (layer types None for a single set of frequencies)."""
    found = []
    for name, module in model.named_modules():
        if not type(module).__name__.endswith("RotaryEmbedding"):
            continue
        buffers = dict(module.named_buffers(recurse=False))
        if "inv_freq" in buffers:
            found.append((name, module, [None]))
        else:
            types = [n[: -len("_inv_freq")] for n in buffers
                     if n.endswith("_inv_freq") and not n.endswith("_original_inv_freq")]
            if types:
                found.append((name, module, types))
    return found


def _check_frequencies(name, module, layer_type, spec) -> None:
    """The spec must give the module's own frequencies and attention factor (as float32)."""
    prefix = "" if layer_type is None else f"{layer_type}_"
    theirs = getattr(module, f"{prefix}original_inv_freq", None)
    if theirs is None:
        theirs = getattr(module, f"{prefix}inv_freq")
    theirs = theirs.detach().cpu()
    # HF computes scaled frequencies in float32 steps (a few ulps from ropekit's, which are rounded
    # once from double), and a model cast to bf16 holds them rounded to bf16: compare at that precision.
    ours = torch.tensor(_C.inv_freq(spec, 0), dtype=torch.float32).to(theirs.dtype).double()
    eps = torch.finfo(theirs.dtype).eps if theirs.dtype.is_floating_point else 0.0
    theirs = theirs.double()
    where = name + ("" if layer_type is None else f" ({layer_type})")
    if ours.shape != theirs.shape or not torch.allclose(ours, theirs, rtol=2 * eps + 1e-6, atol=0):
        raise ValueError(f"{where}: the config's RoPE ({spec.describe()}) does not give the module's inv_freq; "
                         f"not patched")
    factor = float(getattr(module, f"{prefix}attention_scaling", 1.0))
    if abs(_C.attention_factor(spec) - factor) > 1e-6 * max(1.0, abs(factor)):
        raise ValueError(f"{where}: the config's attention factor {_C.attention_factor(spec)} differs from the "
                         f"module's attention_scaling {factor}; not patched")


def _tagging_forward(original, ropes):
    def forward(x, position_ids, *args, **kwargs):
        cos, sin = original(x, position_ids, *args, **kwargs)
        layer_type = args[0] if args else kwargs.get("layer_type")
        rope = ropes.get(layer_type)
        if rope is not None:
            setattr(cos, _TAG, (position_ids, rope))
        return cos, sin
    return forward


def _rotate(q, k, rope, position_ids):
    """q, k [B, H, S, D] rotated by ropekit at position_ids [B or 1, S], or M-RoPE's [3, B or 1, S]
    (t, h, w: the spec's mrope); same layout back."""
    batch, _, seq, _ = q.shape
    if position_ids.dim() == 3:  # axis-major (3, B, S): ropekit reads the axes from the leading extent
        ids = position_ids.expand(position_ids.shape[0], batch, seq).contiguous()
    else:
        ids = position_ids.expand(batch, seq).reshape(-1)
    q_out, k_out = _rt._apply(q.transpose(1, 2), k.transpose(1, 2), rope, ids, None, None, 0.0, False,
                              _C.Direction.forward, 0)
    return q_out.transpose(1, 2), k_out.transpose(1, 2)


def _replacement(original):
    def apply_rotary_pos_emb(q, k, cos, sin, *args, **kwargs):
        tag = getattr(cos, _TAG, None)
        standard = not args and set(kwargs) <= {"unsqueeze_dim"} and kwargs.get("unsqueeze_dim", 1) == 1
        if tag is None or not standard or q.dim() != 4 or k.dim() != 4:
            return original(q, k, cos, sin, *args, **kwargs)
        position_ids, rope = tag
        return _rotate(q, k, rope, position_ids)
    apply_rotary_pos_emb.__wrapped__ = original
    apply_rotary_pos_emb._ropekit = True
    return apply_rotary_pos_emb


def _hf_cos_sin(spec, position_ids):
    """cos, sin in HF's layout ([B, S, rotary_dim], each frequency twice) from ropekit's frequencies,
    angles rounded to float32 as the model computes them."""
    inv_freq = torch.tensor(_C.inv_freq(spec, 0), dtype=torch.float32, device=position_ids.device)
    angle = (position_ids[..., None].float() * inv_freq).double()
    angle = torch.cat((angle, angle), dim=-1)
    factor = _C.attention_factor(spec)
    return (angle.cos() * factor).float(), (angle.sin() * factor).float()


def _probe(module_name, original, rotary, layer_type, rope, spec) -> None:
    """Rotate random q, k both ways (the model's function on cos/sin of ropekit's frequencies, and
    ropekit) and insist they agree: catches a model whose rotation or cos/sin layout is not the
    standard half-style one."""
    gen = torch.Generator().manual_seed(0)
    device = next((b.device for b in rotary.buffers()), torch.device("cpu"))
    q = torch.randn(2, 3, 5, spec.head_dim, generator=gen).to(device)
    k = torch.randn(2, 1, 5, spec.head_dim, generator=gen).to(device)
    # Below any original context, so a dynamic scheme's module keeps its frequencies.
    position_ids = torch.tensor([[0, 1, 2, 3, 4], [5, 7, 11, 13, 15]], device=device)
    cos, sin = _hf_cos_sin(spec, position_ids)
    where = f"{module_name}.apply_rotary_pos_emb"
    # The module's own cos/sin, where its frequencies are float32 (a model cast to bf16 rounds them).
    if all(b.dtype == torch.float32 for n, b in rotary.named_buffers() if n.endswith("inv_freq")):
        extra = () if layer_type is None else (layer_type,)
        with torch.no_grad():
            theirs = rotary.__class__.forward(rotary, q, position_ids, *extra)
        for ours, their in zip((cos, sin), theirs):
            if ours.shape != their.shape or not torch.allclose(ours, their.float(), rtol=1e-5, atol=1e-6):
                raise ValueError(f"{where}: the rotary module's cos/sin are not in the standard layout "
                                 f"(each frequency twice, half style); not patched")
    want = original(q, k, cos, sin)
    got = _rotate(q, k, rope, position_ids)
    for w, g in zip(want, got):
        if w.shape != g.shape or not torch.allclose(w, g, rtol=1e-5, atol=1e-5):
            raise ValueError(f"{where}: its rotation is not ropekit's {spec.describe()} (a rotation other than "
                             f"the standard half-style one?); not patched")


def _modeling_modules(model):
    """The modeling modules (by name) of the model's classes that define apply_rotary_pos_emb."""
    names = []
    for module in model.modules():
        name = type(module).__module__
        mod = sys.modules.get(name)
        if name not in names and callable(getattr(mod, "apply_rotary_pos_emb", None)):
            names.append(name)
    return names


def is_patched(model) -> bool:
    return getattr(model, _STATE, None) is not None


def patch(model, config=None):
    """Route the RoPE of a transformers model through ropekit's kernels (forward, backward, compile).

    config: the model's config by default. Raises ValueError (and changes nothing) when the model has
    no rotary module, when the config's RoPE does not reproduce a rotary module's frequencies, or
    when a modeling module's apply_rotary_pos_emb is not the standard rotation. Returns the model.
    """
    with _lock:
        if is_patched(model):
            raise ValueError("model: already patched by ropekit.hf.patch (unpatch it first)")
        config = model.config if config is None else config
        rotaries = _rotary_modules(model)
        if not rotaries:
            raise ValueError(f"model: no rotary embedding module (*RotaryEmbedding with inv_freq) in "
                             f"{type(model).__name__}")
        modeling = _modeling_modules(model)
        if not modeling:
            raise ValueError(f"model: {type(model).__name__}'s modeling code has no apply_rotary_pos_emb to replace")
        ropes_by_module = []
        for name, module, layer_types in rotaries:
            ropes = {}
            for layer_type in layer_types:
                spec = spec_from_config(config, layer_type)
                if spec is None:
                    continue
                _check_frequencies(name, module, layer_type, spec)
                ropes[layer_type] = (_rope_for(spec), spec)
            ropes_by_module.append((module, ropes))
        for mod_name in modeling:
            original = _replaced[mod_name][0] if mod_name in _replaced else sys.modules[mod_name].apply_rotary_pos_emb
            for module, ropes in ropes_by_module:
                for layer_type, (rope, spec) in ropes.items():
                    _probe(mod_name, original, module, layer_type, rope, spec)
        # Checked; now change things.
        for mod_name in modeling:
            entry = _replaced.get(mod_name)
            if entry is None:
                mod = sys.modules[mod_name]
                entry = _replaced[mod_name] = (mod.apply_rotary_pos_emb, weakref.WeakSet())
                mod.apply_rotary_pos_emb = _replacement(entry[0])
            entry[1].add(model)
        saved = []
        for module, ropes in ropes_by_module:
            saved.append((module, module.__dict__.get("forward")))
            module.forward = _tagging_forward(module.forward, {t: r for t, (r, _) in ropes.items()})
        setattr(model, _STATE, (saved, modeling))
        return model


def unpatch(model):
    """Undo patch(model): the rotary modules' forward and (once no patched model uses it) each
    modeling module's apply_rotary_pos_emb are the originals again. Returns the model."""
    with _lock:
        state = getattr(model, _STATE, None)
        if state is None:
            raise ValueError("model: not patched by ropekit.hf.patch")
        saved, modeling = state
        for module, forward in saved:
            if forward is None:
                del module.forward
            else:
                module.forward = forward
        for mod_name in modeling:
            entry = _replaced[mod_name]
            entry[1].discard(model)
            if not entry[1]:
                sys.modules[mod_name].apply_rotary_pos_emb = entry[0]
                del _replaced[mod_name]
        delattr(model, _STATE)
        return model
