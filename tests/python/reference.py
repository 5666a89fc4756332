"""Plain float64 reference of the rotation (numpy), written independently of ropekit's kernels."""
import numpy as np


def default_inv_freq(dim, base):
    exponent = (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)).astype(np.float64)
    return base ** (-exponent)


def angles(positions, inv_freq):
    """float32(p) * float32(inv_freq) rounded once, as PyTorch (and ropekit by default) computes it."""
    p = np.asarray(positions, dtype=np.float32)[..., None]
    return (p * inv_freq.astype(np.float32)[None]).astype(np.float64)


def rope(x, positions, inv_freq, style="half", attention=1.0, direction="forward", xpos=None, sign=1.0):
    """x (..., H, D) float64 with positions broadcastable to x.shape[:-2]; rotates the first 2*len(inv_freq) dims.

    xpos: (zeta array, scale_base, center) or None.
    """
    x = np.asarray(x, dtype=np.float64)
    pairs = len(inv_freq)
    ang = angles(positions, inv_freq)[..., None, :]  # (..., 1, pairs)
    c = np.cos(ang) * attention
    s = np.sin(ang) * attention
    scale = 1.0
    if xpos is not None:
        zeta, scale_base, center = xpos
        e = sign * (np.asarray(positions, dtype=np.float64) - center) / scale_base
        scale = zeta[None] ** e[..., None]
        scale = scale[..., None, :]
    if direction == "forward":
        c, s = c * scale, s * scale
    elif direction == "backward":
        c, s = c * scale, -s * scale
    else:
        c, s = c / (attention * attention * scale), -s / (attention * attention * scale)
    out = x.copy()
    if style == "half":
        a, b = x[..., :pairs], x[..., pairs:2 * pairs]
        out[..., :pairs] = a * c - b * s
        out[..., pairs:2 * pairs] = b * c + a * s
    else:
        a, b = x[..., 0:2 * pairs:2], x[..., 1:2 * pairs:2]
        out[..., 0:2 * pairs:2] = a * c - b * s
        out[..., 1:2 * pairs:2] = b * c + a * s
    return out


# float64 kernels compute in double with the table's float32 cos/sin: that rounding (2^-24) is the error.
TOL = {"float64": 1e-6, "float32": 1e-5, "float16": 1e-3, "bfloat16": 8e-3}


def assert_close(got, want, dtype="float32"):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.all(np.isfinite(got)), "NaN/inf in result"
    tol = TOL[dtype]
    scale = np.maximum(np.abs(want), 1.0)
    err = np.max(np.abs(got - want) / scale) if got.size else 0.0
    assert err <= tol, f"max relative error {err} > {tol}"
