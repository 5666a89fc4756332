"""ropekit._C and the functional API against the float64 reference: specs, frequencies, tables, apply."""
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import ropekit
from ropekit import _C
from reference import assert_close, default_inv_freq, rope

RNG = np.random.default_rng()


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32) + 0.1  # never all zeros


# --- specs and frequencies -----------------------------------------------------------------------------

SCALINGS = [
    None,
    ropekit.Linear(4.0),
    ropekit.NtkAware(2.0),
    ropekit.DynamicNtk(2.0, original_max=64),
    ropekit.Yarn(4.0, original_max=64),
    ropekit.Yarn(4.0, original_max=64, mscale=1.0, mscale_all_dim=0.5, truncate=False),
    ropekit.Llama3(8.0, 1.0, 4.0, original_max=64),
    ropekit.LongRope([1.0, 1.5, 2.0, 2.5], [2.0, 3.0, 4.0, 5.0], original_max=64, factor=4.0),
    ropekit.Truncated(0.01, 0.5, 0.05),
    ropekit.Truncated.from_length(100.0),
]


@pytest.mark.parametrize("scaling", SCALINGS, ids=lambda s: type(s).__name__)
def test_spec_every_scaling(scaling):
    spec = ropekit.RopeSpec(8, rotary_dim=8, base=10000.0, style="interleaved", scaling=scaling)
    f = ropekit.inv_freq(spec)
    assert f.shape == (4,) and f.dtype == np.float64 and np.all(np.isfinite(f))
    assert spec.head_dim == 8 and spec.pairs == 4 and spec.style == ropekit.Style.interleaved
    name = "none" if scaling is None else spec.scaling_name
    assert name in spec.describe()
    assert ropekit.attention_factor(spec) > 0


def test_inv_freq_matches_float32_torch_formula():
    for dim, base in [(64, 10000.0), (128, 500000.0), (80, 1e6)]:
        spec = ropekit.RopeSpec(dim, base=base)
        want = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))
        np.testing.assert_allclose(ropekit.inv_freq(spec), want.numpy(), rtol=3e-7)


def test_linear_and_ntk_and_partial_rotary():
    base = default_inv_freq(32, 10000.0)
    np.testing.assert_allclose(ropekit.inv_freq(ropekit.RopeSpec(32, scaling=ropekit.Linear(4.0))), base / 4, rtol=1e-12)
    ntk = ropekit.inv_freq(ropekit.RopeSpec(32, scaling=ropekit.NtkAware(2.0)))
    np.testing.assert_allclose(ntk, default_inv_freq(32, 10000.0 * 2.0 ** (32 / 30)), rtol=1e-12)
    partial = ropekit.RopeSpec(64, rotary_dim=32)
    assert partial.rotary_dim == 32 and len(ropekit.inv_freq(partial)) == 16


def test_yarn_helpers_reference_values():
    assert ropekit.find_correction_dim(32, 128, 10000, 2048) == pytest.approx(16.128001690012354, rel=1e-12)
    assert ropekit.find_correction_dim(1, 128, 10000, 2048) == pytest.approx(40.2105, rel=1e-4)
    assert ropekit.get_mscale(4.0) == pytest.approx(1.1386294361, rel=1e-10)
    assert ropekit.get_mscale(0.5) == 1.0
    assert ropekit.find_correction_range(32, 1, 128, 10000, 2048) == (16.0, 41.0)
    m = ropekit.linear_ramp_mask(2.0, 2.0, 5)
    np.testing.assert_allclose(m, np.clip((np.arange(5) - 2.0) / 0.001, 0, 1))


def test_xpos_zeta():
    spec = ropekit.RopeSpec(16, xpos=ropekit.Xpos(512.0, 0.4))
    np.testing.assert_allclose(ropekit.xpos_zeta(spec), (np.arange(0, 16, 2) + 0.4 * 16) / (1.4 * 16), rtol=1e-12)


@pytest.mark.parametrize("kwargs, field", [
    (dict(head_dim=0), "head_dim"),
    (dict(head_dim=8, rotary_dim=7), "rotary_dim"),
    (dict(head_dim=8, base=-1.0), "base"),
    (dict(head_dim=8, scaling=ropekit.Truncated(0.5, 0.1, 0.0)), "a"),
    (dict(head_dim=8, xpos=ropekit.Xpos(0.0)), "xpos.scale_base"),
])
def test_bad_spec_is_value_error_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ropekit.RopeSpec(**kwargs)


def test_bad_style_name():
    with pytest.raises(ValueError):
        ropekit.RopeSpec(8, style="diagonal")


def test_cos_sin_cache_rows_and_growth():
    spec = ropekit.RopeSpec(16, base=10000.0, scaling=ropekit.Yarn(4.0, original_max=64))
    cache = ropekit.RopeTable(spec, 10)
    assert cache.size >= 10 and cache.pairs == 8
    t = cache.table(10)
    a = ropekit.attention_factor(spec)
    assert a == pytest.approx(ropekit.get_mscale(4.0))
    ang = np.arange(10, dtype=np.float32)[:, None] * ropekit.inv_freq(spec).astype(np.float32)[None]
    assert_close(t[:, :8], np.cos(ang.astype(np.float64)) * a)
    assert_close(t[:, 8:], np.sin(ang.astype(np.float64)) * a)
    grown = cache.grown(300)
    assert grown.size >= 300 and cache.size == 10
    np.testing.assert_array_equal(grown.table(10), t)
    np.testing.assert_array_equal(cache.table(10), t)


# --- apply --------------------------------------------------------------------------------------------

def positions_grid(B, S, start=0):
    return np.broadcast_to(np.arange(S)[None, :] + start, (B, S))


@pytest.mark.parametrize("style", ["half", "interleaved"])
@pytest.mark.parametrize("head_dim, rotary_dim", [(16, 16), (24, 8), (64, 64)])
@pytest.mark.parametrize("direction", ["forward", "backward", "inverse"])
def test_apply_numpy_out_of_place(style, head_dim, rotary_dim, direction):
    B, S, Hq, Hk = 2, 7, 4, 2
    spec = ropekit.RopeSpec(head_dim, rotary_dim=rotary_dim, base=10000.0, style=style,
                            scaling=ropekit.Yarn(2.0, original_max=16))
    q, k = randn(B, S, Hq, head_dim), randn(B, S, Hk, head_dim)
    q0, k0 = q.copy(), k.copy()
    qo, ko = ropekit.apply_rope(q, k, spec=spec, positions=3, direction=getattr(ropekit.Direction, direction))
    np.testing.assert_array_equal(q, q0)  # inputs untouched
    np.testing.assert_array_equal(k, k0)
    f = ropekit.inv_freq(spec)
    a = ropekit.attention_factor(spec)
    pos = positions_grid(B, S, 3)
    assert_close(qo, rope(q, pos, f, style, a, direction))
    assert_close(ko, rope(k, pos, f, style, a, direction))


def test_forward_then_inverse_is_identity_and_backward_is_transpose():
    spec = ropekit.RopeSpec(32, style="half", scaling=ropekit.Yarn(4.0, original_max=16), xpos=ropekit.Xpos(64.0))
    q = randn(1, 9, 2, 32)
    y = ropekit.apply_rope(q, spec=spec, xpos_center=4.0)
    back = ropekit.apply_rope(y, spec=spec, inverse=True, xpos_center=4.0)
    assert_close(back, q)
    # <R x, g> == <x, R^T g>
    g = randn(1, 9, 2, 32)
    vjp = ropekit.apply_rope(g, spec=spec, backward=True, xpos_center=4.0)
    assert float(np.sum(y.astype(np.float64) * g)) == pytest.approx(float(np.sum(q.astype(np.float64) * vjp)), rel=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("style", ["half", "interleaved"])
def test_apply_torch_dtypes_inplace(dtype, style):
    spec = ropekit.RopeSpec(32, style=style, base=500000.0, scaling=ropekit.Llama3(8.0, original_max=16))
    q = torch.from_numpy(randn(2, 5, 3, 32)).to(getattr(torch, dtype))
    k = torch.from_numpy(randn(2, 5, 1, 32)).to(getattr(torch, dtype))
    q_in, k_in = q.double().numpy(), k.double().numpy()
    qr, kr = ropekit.apply_rope(q, k, spec=spec, positions=11, inplace=True)
    assert qr is q and kr is k and q.dtype == getattr(torch, dtype)
    f = ropekit.inv_freq(spec)
    pos = positions_grid(2, 5, 11)
    assert_close(q.double().numpy(), rope(q_in, pos, f, style), dtype)
    assert_close(k.double().numpy(), rope(k_in, pos, f, style), dtype)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_positions_ids_offsets(index_dtype):
    B, S, H, D = 3, 4, 2, 16
    spec = ropekit.RopeSpec(D, style="interleaved")
    f = ropekit.inv_freq(spec)
    q = randn(B, S, H, D)
    ids = RNG.integers(0, 50, size=(B, S)).astype(index_dtype)
    assert_close(ropekit.apply_rope(q, spec=spec, positions=ids), rope(q, ids, f, "interleaved"))
    offsets = np.array([0, 5, 17], dtype=index_dtype)
    assert_close(ropekit.apply_rope(q, spec=spec, offsets=offsets),
                 rope(q, offsets[:, None] + np.arange(S)[None], f, "interleaved"))
    tq = torch.from_numpy(q)
    out = ropekit.apply_rope(tq, spec=spec, positions=torch.from_numpy(ids))
    assert isinstance(out, torch.Tensor)
    assert_close(out.numpy(), rope(q, ids, f, "interleaved"))


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_packed_cu_seqlens(index_dtype):
    lengths = [3, 0, 5, 2]
    T, H, D = sum(lengths), 2, 16
    cu = np.concatenate([[0], np.cumsum(lengths)]).astype(index_dtype)
    offsets = np.array([4, 0, 1, 9], dtype=index_dtype)
    spec = ropekit.RopeSpec(D)
    f = ropekit.inv_freq(spec)
    q, k = randn(T, H, D), randn(T, 1, D)
    pos = np.concatenate([np.arange(n) + o for n, o in zip(lengths, offsets)])
    qo, ko = ropekit.apply_rope(q, k, spec=spec, cu_seqlens=cu, offsets=offsets)
    assert_close(qo, rope(q, pos, f))
    assert_close(ko, rope(k, pos, f))
    qo = ropekit.apply_rope(q, spec=spec, cu_seqlens=cu)
    assert_close(qo, rope(q, np.concatenate([np.arange(n) for n in lengths]), f))


def test_bhsd_strides_no_copy_and_table():
    B, H, S, D = 2, 3, 6, 16
    spec = ropekit.RopeSpec(D)
    table = ropekit.RopeTable(spec)  # no rows: positions are computed in the kernel, the table never changes
    mem = torch.from_numpy(randn(B, H, S, D))
    view = mem.permute(0, 2, 1, 3)  # logical BSHD over BHSD memory
    before = view.double().numpy().copy()
    ptr = mem.data_ptr()
    ropekit.apply_rope(view, table=table, positions=2, inplace=True)
    assert mem.data_ptr() == ptr and table.size == 0
    assert_close(view.double().numpy(), rope(before, positions_grid(B, S, 2), ropekit.inv_freq(spec)))
    out = ropekit.apply_rope(view, table=table)
    assert out.stride() == view.stride()  # output keeps the layout


def test_xpos_and_compute_sincos_and_threads():
    D = 32
    spec = ropekit.RopeSpec(D, style="interleaved", xpos=ropekit.Xpos(128.0, 0.4))
    zeta = ropekit.xpos_zeta(spec)
    f = ropekit.inv_freq(spec)
    q, k = randn(2, 10, 2, D), randn(2, 10, 2, D)
    pos = positions_grid(2, 10, 5)
    for compute in (False, True):
        qo, ko = ropekit.apply_rope(q, k, spec=spec, positions=5, xpos_center=7.0, compute_sincos=compute,
                                    num_threads=1)
        assert_close(qo, rope(q, pos, f, "interleaved", xpos=(zeta, 128.0, 7.0), sign=1.0))
        assert_close(ko, rope(k, pos, f, "interleaved", xpos=(zeta, 128.0, 7.0), sign=-1.0))


def test_long_positions_exact_table():
    spec = ropekit.RopeSpec(16)
    table = ropekit.RopeTable(spec, 0, exact=True)
    q = randn(1, 1, 1, 16)
    out = ropekit.apply_rope(q, table=table, positions=np.array([[1_000_000]]), compute_sincos=True)
    ang = 1_000_000 * ropekit.inv_freq(spec)
    c, s = np.cos(ang), np.sin(ang)
    want = np.concatenate([q[..., :8] * c - q[..., 8:] * s, q[..., 8:] * c + q[..., :8] * s], axis=-1)
    assert_close(out, want)


def test_numpy_without_torch():
    code = (
        "import sys, numpy as np, ropekit\n"
        "q = np.random.default_rng().standard_normal((1, 4, 2, 8)).astype(np.float32) + 0.1\n"
        "out = ropekit.apply_rope(q, spec=ropekit.RopeSpec(8))\n"
        "assert type(out) is np.ndarray and out.shape == q.shape and np.isfinite(out).all()\n"
        "assert np.allclose(out[0, 0], q[0, 0]) and not np.allclose(out[0, 3], q[0, 3])\n"
        "assert 'torch' not in sys.modules\n"
        "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
