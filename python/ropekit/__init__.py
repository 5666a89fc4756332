"""ropekit: rotary positional embeddings with a C++ core.

Functional API over any DLPack array (numpy, torch CPU/CUDA, JAX, CuPy): results come back in the
input's framework. ``ropekit.torch`` adds autograd and ``nn.Module`` wrappers, ``ropekit.zeta`` the
Zeta-compatible seed API.
"""
from __future__ import annotations

from . import _C
from ._C import (  # noqa: F401  (re-exported)
    Direction,
    DynamicNtk,
    Linear,
    Llama3,
    LongRope,
    NoScaling,
    NtkAware,
    RopeSpec,
    RopeTable,
    Style,
    Truncated,
    Xpos,
    Yarn,
    attention_factor,
    default_inv_freq,
    find_correction_dim,
    find_correction_range,
    get_mscale,
    linear_ramp_mask,
    xpos_zeta,
)

__version__ = _C.__version__

__all__ = [
    "Direction", "DynamicNtk", "Linear", "Llama3", "LongRope", "NoScaling", "NtkAware",
    "RopeSpec", "RopeTable", "Style", "Truncated", "Xpos", "Yarn", "apply_rope", "attention_factor", "default_inv_freq",
    "find_correction_dim", "find_correction_range", "get_mscale", "inv_freq", "linear_ramp_mask", "xpos_zeta",
]


def inv_freq(spec: RopeSpec, seq_len: int = 0):
    """The inverse frequencies ``spec`` rotates with (float64 numpy array of rotary_dim/2)."""
    return _C.inv_freq(spec, seq_len)


def _framework(x) -> str:
    module = type(x).__module__ or ""
    if module.startswith("torch"):
        return "torch"
    if module.startswith("numpy"):
        return "numpy"
    if module.startswith("jax") or module.startswith("jaxlib"):
        return "jax"
    if module.startswith("cupy"):
        return "cupy"
    return "other"


def _empty_like(x, kind: str):
    if kind == "torch":
        import torch

        return torch.empty_like(x)  # keeps the strides of dense layouts (BHSD stays BHSD)
    if kind == "numpy":
        import numpy as np

        return np.empty_like(x)
    if kind == "cupy":
        import cupy

        return cupy.empty_like(x)
    if kind == "jax":
        import numpy as np

        return np.empty(x.shape, dtype=np.dtype(str(x.dtype)))
    raise TypeError(f"ropekit: cannot allocate an output like {type(x).__name__}; pass q_out=/k_out= or use inplace=True")


def _index(v, like, kind: str, name: str):
    """Positions as an array the core reads: int32/int64, on q's device."""
    if v is None:
        return None
    if kind == "torch":
        import torch

        if not isinstance(v, torch.Tensor):
            v = torch.as_tensor(v, dtype=torch.int64)
        if v.device != like.device:
            v = v.to(like.device)
        return v.contiguous()
    if kind in ("numpy", "jax", "other"):
        import numpy as np

        if _framework(v) == "torch":
            v = v.cpu().numpy()
        v = np.asarray(v)
        if v.dtype.kind not in "iu" and v.size > 0:
            raise TypeError(f"{name}: expected dtype int32 or int64, got {v.dtype}")
        if v.dtype not in (np.int32, np.int64):
            v = v.astype(np.int64)
        return np.ascontiguousarray(v)
    return v


def _stream_of(x, kind: str) -> int:
    if kind == "torch" and x.is_cuda:
        import torch

        return torch.cuda.current_stream(x.device).cuda_stream
    return 0


def _direction(backward: bool, inverse: bool, direction) -> Direction:
    if direction is not None:
        if isinstance(direction, str):
            return getattr(Direction, direction)
        return direction
    if backward and inverse:
        raise ValueError("ropekit: give backward=True or inverse=True, not both")
    return Direction.backward if backward else Direction.inverse if inverse else Direction.forward


def apply_rope(q, k=None, *, spec: RopeSpec | None = None, table: RopeTable | None = None, positions=None,
               offsets=None, cu_seqlens=None, inplace: bool = False, backward: bool = False, inverse: bool = False,
               direction=None, xpos_center: float = 0.0, compute_sincos: bool = False, num_threads: int = 0,
               q_out=None, k_out=None):
    """Rotate q (and k) of shape (batch, seq, heads, head_dim) or packed (tokens, heads, head_dim).

    positions: an int (first position of every sequence, default 0) or an int array of one id per
    token (batch*seq for rank 4, tokens for rank 3). offsets: one start per sequence. cu_seqlens:
    packed sequences (rank 3), with optional offsets. inplace rotates q and k in place (not for JAX,
    whose arrays are immutable). Returns q_out, or (q_out, k_out) when k is given.
    """
    if (spec is None) == (table is None):
        raise ValueError("ropekit: apply_rope: give exactly one of spec= or table=")
    kind = _framework(q)
    if k is not None and _framework(k) != kind:
        raise TypeError(f"k: expected an array of the same framework as q ({kind}), got {_framework(k)}")
    if kind == "jax" and str(q.dtype) == "bfloat16" and not inplace and q_out is None and k_out is None:
        # numpy cannot hold a bfloat16 output for us; the kernel's bf16 path is fp32 math rounded once
        # on store, which is exactly fp32 math on the (losslessly widened) input rounded once here.
        import jax.numpy as jnp

        out = apply_rope(q.astype(jnp.float32), None if k is None else k.astype(jnp.float32), spec=spec,
                         table=table, positions=positions, offsets=offsets, cu_seqlens=cu_seqlens,
                         backward=backward, inverse=inverse, direction=direction, xpos_center=xpos_center,
                         compute_sincos=compute_sincos, num_threads=num_threads)
        if k is None:
            return out.astype(q.dtype)
        return out[0].astype(q.dtype), out[1].astype(k.dtype)
    start = 0
    ids = None
    if positions is None:
        pass
    elif isinstance(positions, int) or (hasattr(positions, "ndim") and positions.ndim == 0 and kind != "torch"):
        start = int(positions)
    else:
        ids = _index(positions, q, kind, "positions")
    offsets = _index(offsets, q, kind, "offsets")
    cu_seqlens = _index(cu_seqlens, q, kind, "cu_seqlens")
    if inplace:
        if kind == "jax":
            raise TypeError("q: JAX arrays are immutable; use inplace=False")
        if q_out is not None or k_out is not None:
            raise ValueError("ropekit: apply_rope: inplace=True takes no q_out/k_out")
    else:
        if q_out is None:
            q_out = _empty_like(q, kind)
        if k is not None and k_out is None:
            k_out = _empty_like(k, kind)
    _C.apply(q, k, q_out, k_out, table=table, spec=spec, start=start, offsets=offsets, ids=ids,
             cu_seqlens=cu_seqlens, direction=_direction(backward, inverse, direction), xpos_center=xpos_center,
             compute_sincos=compute_sincos, num_threads=num_threads, stream=_stream_of(q, kind))
    if inplace:
        return q if k is None else (q, k)
    if kind == "jax":
        import jax.numpy as jnp

        q_out = jnp.asarray(q_out)
        k_out = jnp.asarray(k_out) if k_out is not None else None
    return q_out if k is None else (q_out, k_out)
