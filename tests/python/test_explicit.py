"""ropekit._C.apply_explicit (caller tables) and the Zeta functions that go through it."""
import numpy as np
import pytest
import torch

import ropekit
from ropekit import _C, zeta
from reference import assert_close

RNG = np.random.default_rng()


def rnd(*shape):
    return RNG.standard_normal(shape).astype(np.float32) + 0.1


def ref_explicit(x, c, s, style, width, transpose=False):
    x = x.astype(np.float64)
    c = c.astype(np.float64)[:, None, :]
    s = s.astype(np.float64)[:, None, :]
    out = x.copy()
    n = width // 2
    ia = np.arange(n) if style == "half" else 2 * np.arange(n)
    ib = ia + n if style == "half" else ia + 1
    a, b = x[..., ia], x[..., ib]
    if transpose:
        out[..., ia] = c[..., ia] * a + s[..., ib] * b
        out[..., ib] = c[..., ib] * b - s[..., ia] * a
    else:
        out[..., ia] = c[..., ia] * a - s[..., ia] * b
        out[..., ib] = c[..., ib] * b + s[..., ib] * a
    return out


@pytest.mark.parametrize("style", ["half", "interleaved"])
@pytest.mark.parametrize("head_dim, width", [(16, 16), (24, 8)])
@pytest.mark.parametrize("backward", [False, True])
def test_apply_explicit_matches_reference(style, head_dim, width, backward):
    x = rnd(2, 5, 3, head_dim)
    c, s = rnd(5, width), rnd(5, width)
    out = np.zeros_like(x)
    _C.apply_explicit(x, c, s, out, style=style,
                      direction=_C.Direction.backward if backward else _C.Direction.forward)
    assert_close(out, ref_explicit(x, c, s, style, width, backward))
    y = x.copy()
    _C.apply_explicit(y, c, s, style=style)  # in place; pass-through dims untouched
    assert_close(y, ref_explicit(x, c, s, style, width))
    np.testing.assert_array_equal(y[..., width:], x[..., width:])


@pytest.mark.parametrize("dtype, name", [(torch.float16, "float16"), (torch.bfloat16, "bfloat16")])
def test_apply_explicit_half_precision(dtype, name):
    x = torch.from_numpy(rnd(7, 2, 16)).to(dtype)  # rank 3 (T, H, D)
    c, s = rnd(7, 16), rnd(7, 16)
    out = torch.empty_like(x)
    _C.apply_explicit(x, c, s, out, style="interleaved")
    assert_close(out.double().numpy(), ref_explicit(x.double().numpy(), c, s, "interleaved", 16), name)


def test_apply_explicit_bad_input_nothing_written():
    x = rnd(1, 4, 2, 16)
    out = np.zeros_like(x)
    c = rnd(4, 16)
    with pytest.raises(ValueError, match="direction"):
        _C.apply_explicit(x, c, c, out, direction=_C.Direction.inverse)
    with pytest.raises(ValueError, match="coefficients.seq"):
        _C.apply_explicit(x, rnd(3, 16), rnd(3, 16), out)
    with pytest.raises(ValueError, match="coefficients.width"):
        _C.apply_explicit(x, rnd(4, 7), rnd(4, 7), out)
    with pytest.raises(ValueError, match="coefficients.width"):
        _C.apply_explicit(x, rnd(4, 32), rnd(4, 32), out)
    with pytest.raises(TypeError, match="cos: expected dtype float32"):
        _C.apply_explicit(x, c.astype(np.float64), c, out)
    with pytest.raises(ValueError, match="sin.shape"):
        _C.apply_explicit(x, c, rnd(4, 8), out)
    with pytest.raises(TypeError, match="x: expected dtype"):
        _C.apply_explicit(x.astype(np.int32), c, c, out)
    with pytest.raises(ValueError, match="out.dtype"):
        _C.apply_explicit(x.astype(np.float64), c, c, out)
    with pytest.raises(ValueError, match="out.shape"):
        _C.apply_explicit(x, c, c, np.zeros((1, 4, 1, 16), np.float32))
    assert not out.any()


@pytest.fixture
def count_core_calls(monkeypatch):
    calls = []
    real = _C.apply_explicit

    def counting(*args, **kwargs):
        calls.append(kwargs.get("style"))
        return real(*args, **kwargs)

    monkeypatch.setattr(_C, "apply_explicit", counting)
    return calls


def test_zeta_functions_use_the_core(count_core_calls):
    q, k = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    freqs, scale = zeta.SinusoidalEmbeddings(16, scale_base=32, use_xpos=True)(q)
    zeta.apply_rotary_pos_emb(q, k, freqs, scale)
    assert count_core_calls == ["half", "half"]
    sin, cos = zeta.fixed_pos_embedding(torch.zeros(5, 8))
    zeta.xpos.apply_rotary_pos_emb(q, sin, cos, 0.5)
    assert count_core_calls[-1] == "interleaved"
    zeta.apply_rotary_emb(torch.randn(1, 5, 2, 16), torch.randn(1, 5, 1, 16), zeta.precompute_freqs_cis(16, 5))
    assert count_core_calls[-2:] == ["interleaved", "interleaved"]
    f, _ = zeta.RotaryEmbedding(16)(5)
    zeta.rope.apply_rotary_pos_emb(q, f)
    assert len(count_core_calls) == 6
    zeta.XPOS(16)(q)  # the XPOS module uses the table-based apply, not explicit tables
    assert len(count_core_calls) == 6


def test_gradients_through_explicit_path_and_fallback():
    q = torch.randn(3, 6, 16, requires_grad=True)
    k = torch.randn(3, 6, 16, requires_grad=True)
    freqs, scale = zeta.SinusoidalEmbeddings(16, scale_base=16, use_xpos=True)(q)
    gq, gk = torch.randn(3, 6, 16), torch.randn(3, 6, 16)
    qo, ko = zeta.apply_rotary_pos_emb(q, k, freqs, scale)
    torch.autograd.backward([qo, ko], [gq, gk])
    qd = q.detach().double().requires_grad_()
    kd = k.detach().double().requires_grad_()
    fd, sd = freqs.double(), scale.double()
    rh = lambda x: torch.cat([-x[..., 8:], x[..., :8]], -1)  # noqa: E731
    rq = qd * fd.cos() * sd + rh(qd) * fd.sin() * sd
    rk = kd * fd.cos() / sd + rh(kd) * fd.sin() / sd
    torch.autograd.backward([rq, rk], [gq.double(), gk.double()])
    torch.testing.assert_close(q.grad.double(), qd.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(k.grad.double(), kd.grad, rtol=1e-5, atol=1e-5)
    # freqs that need a gradient take the torch-ops path, and get one
    f = freqs.clone().requires_grad_()
    qo, _ = zeta.apply_rotary_pos_emb(q.detach(), k.detach(), f, 1)
    qo.sum().backward()
    assert f.grad is not None and torch.isfinite(f.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_llama_half_precision_core_equals_upstream_formula(dtype):
    xq, xk = torch.randn(2, 7, 3, 32).to(dtype), torch.randn(2, 7, 1, 32).to(dtype)
    fc = zeta.precompute_freqs_cis(32, 7)
    qo, ko = zeta.apply_rotary_emb(xq, xk, fc)
    xq_ = torch.view_as_complex(xq.float().reshape(2, 7, 3, -1, 2))
    want = torch.view_as_real(xq_ * fc[None, :, None]).flatten(3).type_as(xq)
    tol = 1e-3 if dtype == torch.float16 else 8e-3
    torch.testing.assert_close(qo.float(), want.float(), rtol=tol, atol=tol)
