"""Each Zeta class/function against a float64 transliteration of the upstream formulas (written here,
not calling ropekit), random inputs, several dims."""
import math

import pytest
import torch

from ropekit import zeta

F64 = torch.float64
DIMS = [8, 32, 96]


def close(got, want, tol=1e-5):
    torch.testing.assert_close(got.double(), want.double(), rtol=tol, atol=tol)


def ref_inv(dim, base=10000.0):
    return base ** (-torch.arange(0, dim, 2, dtype=F64) / dim)


def ref_rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def ref_rotate_every_two(x):
    return torch.stack((-x[..., 1::2], x[..., ::2]), dim=-1).flatten(-2)


# --- Truncated -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("abr", [(0.1, 0.9, 0.5), (1e-4, 1e-2, 1e-3), (0.0, 0.0, 0.0)])
def test_truncated(dim, abr):
    a, b, rho = abr
    m = zeta.TruncatedRotaryEmbedding(dim, a, b, rho)
    got = m(37, torch.device("cpu"))
    beta = ref_inv(dim)
    theta = 10000.0 ** (-2 * torch.arange(0, dim, 2, dtype=F64) / dim)
    star = torch.where(theta >= b, theta, torch.where(theta < a, torch.zeros_like(theta), torch.full_like(theta, rho)))
    want = torch.arange(37, dtype=F64)[:, None] * (beta * star)[None]
    close(got, torch.cat([want, want], -1))
    assert "inv_freq" in dict(m.named_buffers())


def test_truncated_validates():
    with pytest.raises(ValueError):
        zeta.TruncatedRotaryEmbedding(16, 0.9, 0.1, 0.5)  # a > b


# --- Sinusoidal ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("L", [1, 7, 16])
def test_sinusoidal(dim, L):
    x = torch.randn(2, L, dim)
    freqs, scale = zeta.SinusoidalEmbeddings(dim)(x)
    t = torch.arange(L, dtype=F64)
    f = t[:, None] * ref_inv(dim)[None]
    close(freqs, torch.cat([f, f], -1))
    assert scale.shape == (1,) and float(scale) == 1.0
    freqs, scale = zeta.SinusoidalEmbeddings(dim, scale_base=64, use_xpos=True)(x)
    zeta_i = (torch.arange(0, dim, 2, dtype=F64) + 0.4 * dim) / (1.4 * dim)
    sc = zeta_i[None] ** ((t - L // 2) / 64)[:, None]
    close(scale, torch.cat([sc, sc], -1))


def test_sinusoidal_xpos_needs_scale_base():
    with pytest.raises(ValueError, match="scale_base"):
        zeta.SinusoidalEmbeddings(16, use_xpos=True)


@pytest.mark.parametrize("dim", DIMS)
def test_rotate_half_any_rank(dim):
    for shape in [(dim,), (3, dim), (2, 3, 4, dim)]:
        x = torch.randn(*shape)
        close(zeta.rotate_half(x), ref_rotate_half(x.double()), 0)
    x = torch.arange(8.0)
    assert zeta.rotate_half(x).tolist() == [-4.0, -5.0, -6.0, -7.0, 0.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize("dim", DIMS)
def test_sinusoidal_apply_rotary_pos_emb(dim):
    q, k = torch.randn(2, 5, dim), torch.randn(2, 9, dim)
    freqs = torch.randn(9, dim)
    scale = torch.rand(9, dim) + 0.5
    qo, ko = zeta.apply_rotary_pos_emb(q, k, freqs, scale)
    qd, kd, fd, sd = q.double(), k.double(), freqs.double(), scale.double()
    close(qo, qd * fd[-5:].cos() * sd[-5:] + ref_rotate_half(qd) * fd[-5:].sin() * sd[-5:])
    close(ko, kd * fd.cos() / sd + ref_rotate_half(kd) * fd.sin() / sd)
    qo, ko = zeta.apply_rotary_pos_emb(q, k, freqs, 2.0)  # a plain number works (upstream crashes)
    close(ko, (kd * fd.cos() + ref_rotate_half(kd) * fd.sin()) / 2)


# --- YaRN ------------------------------------------------------------------------------------------------

def ref_yarn(dim, base, orig, scale, beta_fast, beta_slow, extrapolation_factor, attn_factor):
    """jquesnelle's yarn(): inv_freq and mscale in float64."""
    def fcd(r):
        return dim * math.log(orig / (r * 2 * math.pi)) / (2 * math.log(base))
    low, high = max(math.floor(fcd(beta_fast)), 0), min(math.ceil(fcd(beta_slow)), dim - 1)
    if low == high:
        high += 0.001
    ramp = torch.clamp((torch.arange(dim // 2, dtype=F64) - low) / (high - low), 0, 1)
    pos = base ** (torch.arange(0, dim, 2, dtype=F64) / dim)
    mask = (1 - ramp) * extrapolation_factor
    inv = (1.0 / (scale * pos)) * (1 - mask) + (1.0 / pos) * mask
    mscale = (1.0 if scale <= 1 else 0.1 * math.log(scale) + 1.0) * attn_factor
    return inv, mscale


def ref_cos_sin(inv, mscale, rows):
    ang = torch.arange(rows, dtype=F64)[:, None] * inv[None]
    emb = torch.cat([ang, ang], -1)
    return (emb.cos() * mscale)[None, None], (emb.sin() * mscale)[None, None]


@pytest.mark.parametrize("dim", [16, 64])
def test_yarn_finetuned(dim):
    m = zeta.YarnEmbedding(dim, max_position_embeddings=64, original_max_position_embeddings=16,
                           extrapolation_factor=1, attn_factor=1.5, finetuned=True)
    inv, ms = ref_yarn(dim, 10000, 16, 4.0, 32, 1, 1, 1.5)
    close(m.inv_freq, inv)
    assert m.mscale == pytest.approx(ms, rel=1e-9)
    x = torch.randn(2, 4, 30, dim)
    cos, sin = m(x)
    rc, rs = ref_cos_sin(inv, ms, 30)
    assert cos.shape == (1, 1, 30, dim)
    close(cos, rc)
    close(sin, rs)


@pytest.mark.parametrize("dim", [16, 64])
def test_yarn_growth_past_max_positions(dim):
    m = zeta.YarnEmbedding(dim, max_position_embeddings=32, original_max_position_embeddings=16, beta_fast=16,
                           beta_slow=2, extrapolation_factor=0.5)
    x = torch.randn(1, 20, dim)
    cos, _ = m(x)
    rc, _ = ref_cos_sin(ref_inv(dim), 1.0, 20)  # not finetuned: plain frequencies, mscale 1
    close(cos, rc)
    x = torch.randn(1, 48, dim)
    cos, sin = m(x, seq_len=48)
    inv, ms = ref_yarn(dim, 10000, 16, 3.0, 16, 2, 0.5, 1)
    rc, rs = ref_cos_sin(inv, ms, 48)
    close(cos, rc)
    close(sin, rs)
    assert m.max_seq_len_cached == 48
    cos, _ = m(torch.randn(1, 10, dim))  # never shrinks: rows from the grown table
    close(cos, rc[:, :, :10])


def test_yarn_dtype_follows_x():
    m = zeta.YarnEmbedding(32, max_position_embeddings=64)
    cos, sin = m(torch.randn(1, 8, 32).half())
    assert cos.dtype == torch.float16 and sin.dtype == torch.float16


@pytest.mark.parametrize("dim, base, mpe", [(64, 10000, 2048), (128, 500000, 8192), (256, 10000, 4096)])
def test_yarn_helpers(dim, base, mpe):
    for r in [1, 2.5, 32]:
        assert zeta.find_correction_dim(r, dim, base, mpe) == pytest.approx(
            dim * math.log(mpe / (2 * math.pi * r)) / (2 * math.log(base)), rel=1e-12)
    lo = dim * math.log(mpe / (2 * math.pi * 32)) / (2 * math.log(base))
    hi = dim * math.log(mpe / (2 * math.pi * 1)) / (2 * math.log(base))
    assert zeta.find_correction_range(32, 1, dim, base, mpe) == (max(math.floor(lo), 0), min(math.ceil(hi), dim - 1))
    assert zeta.find_correction_dim(32, 128) == pytest.approx(16.128, abs=1e-3)
    assert zeta.find_correction_dim(1, 128) == pytest.approx(40.210, abs=1e-3)
    assert zeta.get_mscale(4) == pytest.approx(1.1386294361, rel=1e-10)
    assert zeta.get_mscale(1) == 1.0 and zeta.get_mscale(0.5) == 1.0
    close(zeta.linear_ramp_mask(3, 3, 8), torch.clamp((torch.arange(8, dtype=F64) - 3) / 0.001, 0, 1))
    close(zeta.linear_ramp_mask(1.5, 6, 8), torch.clamp((torch.arange(8, dtype=F64) - 1.5) / 4.5, 0, 1), 1e-7)


# --- XPOS ------------------------------------------------------------------------------------------------

def ref_xpos(x, head_dim, scale_base, offset, downscale):
    length = x.shape[-2]
    center = math.ceil((length + offset) / 2)
    p = torch.arange(offset, offset + length, dtype=F64)
    zeta_i = (torch.arange(0, head_dim, 2, dtype=F64) + 0.4 * head_dim) / (1.4 * head_dim)
    e = (p - center) / scale_base
    sc = zeta_i[None] ** (-e if downscale else e)[:, None]
    ang = p[:, None] * ref_inv(head_dim)[None]
    dup = lambda t: t.repeat_interleave(2, -1)  # noqa: E731
    xd = x.double()
    return xd * dup(ang.cos() * sc) + ref_rotate_every_two(xd) * dup(ang.sin() * sc)


@pytest.mark.parametrize("head_dim", DIMS)
@pytest.mark.parametrize("offset, downscale", [(0, False), (3, False), (5, True), (0, True)])
def test_xpos_module(head_dim, offset, downscale):
    m = zeta.XPOS(head_dim, scale_base=64)
    x = torch.randn(6, 11, head_dim)
    close(m(x, offset=offset, downscale=downscale), ref_xpos(x, head_dim, 64, offset, downscale))
    x4 = torch.randn(2, 3, 11, head_dim)  # rank 4 (B, H, L, D) accepted too
    close(m(x4, offset, downscale), ref_xpos(x4, head_dim, 64, offset, downscale))


def test_xpos_q_k_relative():
    # xPos: q upscaled, k downscaled at the same offsets gives scores depending on relative position only
    m = zeta.XPOS(16, scale_base=32)
    q, k = torch.randn(1, 1, 16).expand(1, 12, 16).contiguous(), torch.randn(1, 1, 16).expand(1, 12, 16).contiguous()
    s = m(q) @ m(k, downscale=True).transpose(1, 2)
    assert torch.allclose(s[0, 3, 1], s[0, 7, 5], rtol=1e-5)


def test_xpos_gradients_flow():
    m = zeta.XPOS(16)
    x = torch.randn(2, 5, 16, requires_grad=True)
    g = torch.randn(2, 5, 16)
    (m(x, offset=1) * g).sum().backward()
    xd = x.detach().double().requires_grad_()
    (ref_xpos(xd, 16, 512, 1, False) * g.double()).sum().backward()
    close(x.grad, xd.grad)


@pytest.mark.parametrize("shape", [(5, 4), (13, 48)])
def test_fixed_pos_embedding_and_helpers(shape):
    n, mdim = shape
    x = torch.randn(n, mdim)
    sin, cos = zeta.fixed_pos_embedding(x)
    ang = torch.arange(n, dtype=F64)[:, None] * (1.0 / 10000 ** (torch.arange(mdim, dtype=F64) / mdim))[None]
    close(sin, ang.sin())
    close(cos, ang.cos())
    assert sin.dtype == x.dtype and zeta.fixed_pos_embedding(x.half())[0].dtype == torch.float16
    close(zeta.duplicate_interleave(x), x.double().repeat_interleave(2, -1), 0)
    y = torch.randn(2, n, 2 * mdim)
    close(zeta.rotate_every_two(y), ref_rotate_every_two(y.double()), 0)
    assert zeta.rotate_every_two(torch.arange(4.0)).tolist() == [-1.0, 0.0, -3.0, 2.0]


def test_xpos_style_apply_rotary_pos_emb_with_tensor_scale():
    x = torch.randn(2, 7, 16)
    sin, cos = torch.randn(7, 8), torch.randn(7, 8)
    scale = torch.rand(7, 8) + 0.5
    got = zeta.xpos.apply_rotary_pos_emb(x, sin, cos, scale)
    dup = lambda t: t.double().repeat_interleave(2, -1)  # noqa: E731
    close(got, x.double() * dup(cos * scale) + ref_rotate_every_two(x.double()) * dup(sin * scale))


# --- LLaMA -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dim, end, theta", [(8, 5, 10000.0), (64, 33, 500000.0), (128, 17, 10000.0)])
def test_precompute_freqs_cis(dim, end, theta):
    fc = zeta.precompute_freqs_cis(dim, end, theta)
    assert fc.dtype == torch.complex64 and fc.shape == (end, dim // 2)
    ang = torch.arange(end, dtype=F64)[:, None] * ref_inv(dim, theta)[None]
    close(torch.view_as_real(fc), torch.view_as_real(torch.polar(torch.ones_like(ang), ang)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_apply_rotary_emb(dtype):
    B, S, H, D = 2, 6, 3, 16
    xq, xk = torch.randn(B, S, H, D).to(dtype), torch.randn(B, S, 1, D).to(dtype)
    fc = zeta.precompute_freqs_cis(D, S)
    qo, ko = zeta.apply_rotary_emb(xq, xk, fc)
    assert qo.dtype == dtype and ko.shape == xk.shape
    ang = torch.arange(S, dtype=F64)[:, None] * ref_inv(D)[None]
    c, s = ang.cos()[None, :, None], ang.sin()[None, :, None]
    for x, out in ((xq, qo), (xk, ko)):
        xd = x.double()
        a, b = xd[..., ::2], xd[..., 1::2]
        want = torch.stack([a * c - b * s, a * s + b * c], -1).flatten(-2)
        tol = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 8e-3}[dtype]
        close(out, want, tol)


# --- Zeta RotaryEmbedding --------------------------------------------------------------------------------

@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("interp, rescale", [(1.0, 1.0), (2.0, 1.0), (1.0, 4.0), (3.0, 2.0)])
def test_rotary_embedding(dim, interp, rescale):
    m = zeta.RotaryEmbedding(dim, interpolation_factor=interp, base=10000, base_rescale_factor=rescale)
    freqs, scale = m(19, torch.device("cpu"))
    base = 10000 * rescale ** (dim / (dim - 2))
    f = (torch.arange(19, dtype=F64) / interp)[:, None] * ref_inv(dim, base)[None]
    close(freqs, torch.cat([f, f], -1))
    assert scale == 1.0
    m = zeta.RotaryEmbedding(dim, use_xpos=True, scale_base=100)
    freqs, scale = m(19, "cpu")
    zeta_i = (torch.arange(0, dim, 2, dtype=F64) + 0.4 * dim) / (1.4 * dim)
    sc = zeta_i[None] ** ((torch.arange(19, dtype=F64) - 19 // 2) / 100)[:, None]
    close(scale, torch.cat([sc, sc], -1))
    t = torch.randn(2, 7, dim)
    got = zeta.rope.apply_rotary_pos_emb(t, freqs, scale)
    fd, sd = freqs.double()[-7:], scale.double()[-7:]
    close(got, t.double() * fd.cos() * sd + ref_rotate_half(t.double()) * fd.sin() * sd)


def test_rotary_embedding_rejects_interpolation_below_one():
    with pytest.raises(ValueError):
        zeta.RotaryEmbedding(16, interpolation_factor=0.5)


# --- strided inputs (upstream's torch ops take any layout) ----------------------------------------------------

def last_axis_strided(*shape):
    """A tensor of `shape` whose last axis is not contiguous (transposed memory)."""
    return torch.randn(*shape[:-2], shape[-1], shape[-2]).transpose(-1, -2)


def test_strided_inputs_sinusoidal_and_rope():
    # Before the fix the core's kernel refused these: "x.strides[-1]: expected 1".
    q, k = last_axis_strided(2, 5, 16), torch.randn(2, 32, 9)[:, ::2].transpose(-1, -2)  # k (2, 9, 16) strided
    assert q.stride(-1) != 1 and k.stride(-1) != 1
    freqs, scale = zeta.SinusoidalEmbeddings(16, scale_base=32, use_xpos=True)(k)
    qo, ko = zeta.apply_rotary_pos_emb(q, k, freqs, scale)
    qd, kd, fd, sd = q.double(), k.double(), freqs.double(), scale.double()
    close(qo, qd * fd[-5:].cos() * sd[-5:] + ref_rotate_half(qd) * fd[-5:].sin() * sd[-5:])
    close(ko, kd * fd.cos() / sd + ref_rotate_half(kd) * fd.sin() / sd)
    f, _ = zeta.RotaryEmbedding(16)(9)
    close(zeta.rope.apply_rotary_pos_emb(q, f), qd * f.double()[-5:].cos() + ref_rotate_half(qd) * f.double()[-5:].sin())
    broadcast = torch.randn(1, 1, 16).expand(2, 5, 16)  # stride 0
    qo, _ = zeta.apply_rotary_pos_emb(broadcast, k, freqs, scale)
    bd = broadcast.double()
    close(qo, bd * fd[-5:].cos() * sd[-5:] + ref_rotate_half(bd) * fd[-5:].sin() * sd[-5:])


def test_strided_inputs_xpos():
    x = last_axis_strided(6, 11, 32)
    sin, cos = zeta.fixed_pos_embedding(torch.zeros(11, 16))
    got = zeta.xpos.apply_rotary_pos_emb(x, sin, cos, 0.5)
    dup = lambda t: t.double().repeat_interleave(2, -1)  # noqa: E731
    close(got, x.double() * dup(cos * 0.5) + ref_rotate_every_two(x.double()) * dup(sin * 0.5))
    m = zeta.XPOS(32, scale_base=64)
    for downscale in (False, True):
        close(m(x, offset=3, downscale=downscale), ref_xpos(x, 32, 64, 3, downscale))
    x4 = last_axis_strided(2, 3, 11, 32)
    close(m(x4, 2), ref_xpos(x4, 32, 64, 2, False))


def test_strided_inputs_llama():
    xq = torch.randn(2, 16, 3, 6).permute(0, 3, 2, 1)  # (2, 6, 3, 16), last axis strided
    xk = torch.randn(2, 6, 1, 32)[..., ::2]
    fc = zeta.precompute_freqs_cis(16, 6)
    qo, ko = zeta.apply_rotary_emb(xq, xk, fc)
    ang = torch.arange(6, dtype=F64)[:, None] * ref_inv(16)[None]
    c, s = ang.cos()[None, :, None], ang.sin()[None, :, None]
    for x, out in ((xq, qo), (xk, ko)):
        a, b = x.double()[..., ::2], x.double()[..., 1::2]
        close(out, torch.stack([a * c - b * s, a * s + b * c], -1).flatten(-2))


def test_strided_gradients():
    x = last_axis_strided(2, 7, 16).requires_grad_()
    freqs, scale = zeta.SinusoidalEmbeddings(16, scale_base=16, use_xpos=True)(x)
    g = torch.randn(2, 7, 16)
    (zeta.rope.apply_rotary_pos_emb(x, freqs, scale) * g).sum().backward()
    xd = x.detach().double().requires_grad_()
    fd, sd = freqs.double(), scale.double()
    ((xd * fd.cos() * sd + ref_rotate_half(xd) * fd.sin() * sd) * g.double()).sum().backward()
    close(x.grad, xd.grad)


# --- float64: the core in double with float32 coefficients, the sinusoidal path and XPOS alike ----------------

@pytest.fixture
def core_calls(monkeypatch):
    from ropekit import _C

    calls = {"explicit": 0, "apply": 0}
    explicit, apply = _C.apply_explicit, _C.apply

    def counting_explicit(*a, **kw):
        calls["explicit"] += 1
        return explicit(*a, **kw)

    def counting_apply(*a, **kw):
        calls["apply"] += 1
        return apply(*a, **kw)

    monkeypatch.setattr(_C, "apply_explicit", counting_explicit)
    monkeypatch.setattr(_C, "apply", counting_apply)
    import ropekit.torch as rt

    if rt.NATIVE_OPS:  # ropekit.torch reaches the same core through its native op
        native = rt._native_rope

        def counting_native(*a, **kw):
            calls["apply"] += 1
            return native(*a, **kw)

        monkeypatch.setattr(rt, "_native_rope", counting_native)
    return calls


def test_float64_sinusoidal_and_xpos_go_through_the_core(core_calls):
    # float64 x with Zeta's float32 freqs / scale: the result is float64, as upstream's promotion gives.
    q, k = torch.randn(2, 5, 16, dtype=F64), torch.randn(2, 9, 16, dtype=F64)
    freqs, scale = zeta.SinusoidalEmbeddings(16, scale_base=32, use_xpos=True)(k)
    qo, ko = zeta.apply_rotary_pos_emb(q, k, freqs, scale)
    assert qo.dtype == F64 and ko.dtype == F64 and core_calls["explicit"] == 2
    fd, sd = freqs.double(), scale.double()
    close(qo, q * fd[-5:].cos() * sd[-5:] + ref_rotate_half(q) * fd[-5:].sin() * sd[-5:], 1e-6)
    close(ko, k * fd.cos() / sd + ref_rotate_half(k) * fd.sin() / sd, 1e-6)
    x = torch.randn(6, 11, 32, dtype=F64)
    for downscale in (False, True):
        out = zeta.XPOS(32, scale_base=64)(x, offset=3, downscale=downscale)
        assert out.dtype == F64
        close(out, ref_xpos(x, 32, 64, 3, downscale), 1e-6)
    assert core_calls["apply"] == 2
    sin, cos = zeta.fixed_pos_embedding(torch.zeros(11, 16))
    out = zeta.xpos.apply_rotary_pos_emb(x, sin, cos, 0.5)
    assert out.dtype == F64 and core_calls["explicit"] == 3
    dup = lambda t: t.double().repeat_interleave(2, -1)  # noqa: E731
    close(out, x * dup(cos * 0.5) + ref_rotate_every_two(x) * dup(sin * 0.5), 1e-6)


def test_float64_gradcheck_and_gradgradcheck_zeta():
    x = torch.randn(1, 3, 8, dtype=F64, requires_grad=True)
    k = torch.randn(1, 3, 8, dtype=F64, requires_grad=True)
    freqs, scale = zeta.SinusoidalEmbeddings(8, scale_base=16, use_xpos=True)(x)
    sin, cos = zeta.fixed_pos_embedding(torch.zeros(3, 4))
    m = zeta.XPOS(8, scale_base=32)
    fns = {
        "sinusoidal": lambda a, b: zeta.apply_rotary_pos_emb(a, b, freqs, scale),
        "xpos_function": lambda a, b: zeta.xpos.apply_rotary_pos_emb(a, sin, cos, 0.5) * b,
        "XPOS": lambda a, b: (m(a, offset=2), m(b, offset=2, downscale=True)),
    }
    for name, fn in fns.items():
        assert torch.autograd.gradcheck(fn, (x, k)), name
        assert torch.autograd.gradgradcheck(fn, (x, k)), name


def test_xpos_offset_must_be_an_integer():
    # Before: int(offset) truncated 2.7 to 2 silently.
    m = zeta.XPOS(16)
    x = torch.randn(2, 5, 16)
    for bad in (2.7, True, [1]):
        with pytest.raises(TypeError, match="^offset: expected an int"):
            m(x, offset=bad)
    import numpy as np

    close(m(x, offset=np.int64(2)), ref_xpos(x, 16, 512, 2, False))


@pytest.mark.parametrize("offset, downscale", [(0, False), (3, True)])
def test_xpos_upstream_formula_for_float64_off_the_cpu(offset, downscale):
    # XPOS computes float64 on a CUDA device with upstream's torch ops (the core's float64 is CPU only);
    # the same formula on the CPU equals the float64 reference and the core's float64 result.
    m = zeta.XPOS(32, scale_base=64)
    x = torch.randn(6, 11, 32, dtype=F64)
    got = m._upstream(x, offset, downscale)
    assert got.dtype == F64
    close(got, ref_xpos(x, 32, 64, offset, downscale), 1e-6)
    close(got, m(x, offset=offset, downscale=downscale), 1e-6)
