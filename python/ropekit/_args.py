"""Checks of position arguments shared by ropekit.apply_rope and ropekit.torch (numpy only, no torch).

Positions are integers: a float, a bool or an array of either is a TypeError naming the argument,
never truncated. Messages show at most a few elements of what was passed.
"""
from __future__ import annotations

import numpy as np

_EXPECTED = "an int or an integer array (int32 or int64)"


def describe(v) -> str:
    """Type and a bounded preview of v, for error messages."""
    if isinstance(v, (list, tuple)):
        head = ", ".join(_short(x, 16) for x in v[:4])
        more = ", ..." if len(v) > 4 else ""
        return f"{type(v).__name__} of {len(v)} elements [{head}{more}]"
    return f"{type(v).__name__} {_short(v, 60)}"


def _short(v, limit: int) -> str:
    if isinstance(v, (list, tuple)):
        return f"<{type(v).__name__} of {len(v)}>"
    try:
        r = repr(v)
    except Exception:  # an int past Python's digit limit, a broken __repr__
        return f"an int of {v.bit_length()} bits" if isinstance(v, int) else f"<{type(v).__name__}>"
    return r if len(r) <= limit else r[:limit] + "..."


def framework(x) -> str:
    module = type(x).__module__ or ""
    for name in ("torch", "numpy", "jax", "cupy"):
        if module.startswith(name):
            return name
    if module.startswith("jaxlib"):
        return "jax"
    return "other"


def check_integer_dtype(dtype, name: str) -> None:
    """A numpy dtype of signed or unsigned integers, not bool."""
    if dtype.kind not in "iu":
        raise TypeError(f"{name}: expected {_EXPECTED}, got dtype {dtype}")


def as_numpy(v, name: str) -> np.ndarray:
    """v (list, numpy, JAX, torch or any array) as a numpy array of integers, not yet cast."""
    if framework(v) == "torch":
        v = v.detach().cpu().numpy()
    try:
        a = np.asarray(v)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name}: expected {_EXPECTED}, got {describe(v)}") from e
    if a.size == 0 and a.dtype.kind == "f":
        a = a.astype(np.int64)  # [] is float64 to numpy
    check_integer_dtype(a.dtype, name)
    return a


_INT64 = (-(1 << 63), (1 << 63) - 1)


def scalar(v, name: str):
    """An integer scalar as int; None when v is not a scalar (an array of ids). Non-integers raise
    TypeError, integers outside int64 ValueError (the core checks the rest of the range)."""
    if isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name}: expected {_EXPECTED}, got bool {v!r}")
    if isinstance(v, int):
        if not _INT64[0] <= v <= _INT64[1]:
            raise ValueError(f"{name}: expected an integer in [0, 2^63 - 2], got {_short(v, 60)}")
        return v
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, (float, complex, str, bytes, np.generic)) or v is None:
        raise TypeError(f"{name}: expected {_EXPECTED}, got {describe(v)}")
    if getattr(v, "ndim", None) == 0 and framework(v) not in ("torch", "cupy"):
        a = np.asarray(v)
        check_integer_dtype(a.dtype, name)
        return int(a)
    return None


def index_array(v, name: str) -> np.ndarray:
    """v as a contiguous int32/int64 numpy array (other integer dtypes widened to int64)."""
    a = as_numpy(v, name)
    if a.dtype not in (np.int32, np.int64):
        a = a.astype(np.int64)
    return np.ascontiguousarray(a)


def positions(v, name: str = "positions"):
    """(start, ids) for numpy-side callers: an integer scalar is a start, anything else an ids array."""
    if v is None:
        return 0, None
    s = scalar(v, name)
    if s is not None:
        return s, None
    a = as_numpy(v, name)
    if a.ndim == 0:
        return scalar(int(a), name), None
    return 0, index_array(a, name)
