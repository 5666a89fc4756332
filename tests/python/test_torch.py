"""ropekit.torch: autograd through the backward kernel, nn.Module, custom op / torch.compile."""
import numpy as np
import pytest
import torch

import ropekit
import ropekit.torch as rt
from reference import assert_close, rope

TORCH_VERSION = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])


def test_torch_is_real():
    # CI must exercise a real torch (Debian's python3-torch), not skip.
    x = torch.ones(3, requires_grad=True)
    (x * 2).sum().backward()
    assert torch.equal(x.grad, torch.full((3,), 2.0))


def plain_torch_rope(x, positions, inv_freq, style, zeta=None, scale_base=1.0, center=0.0, sign=1.0):
    """The same rotation in plain torch ops (autograd reference), float32 or float64."""
    inv = torch.as_tensor(inv_freq, dtype=torch.float32)
    ang = (positions.to(torch.float32)[..., None] * inv).to(x.dtype)[..., None, :]
    c, s = ang.cos(), ang.sin()
    if zeta is not None:
        e = sign * (positions.to(x.dtype) - center) / scale_base
        sc = torch.as_tensor(zeta, dtype=x.dtype)[None] ** e[..., None]
        c, s = c * sc[..., None, :], s * sc[..., None, :]
    n = inv.numel()
    if style == "half":
        a, b = x[..., :n], x[..., n:2 * n]
        return torch.cat([a * c - b * s, b * c + a * s, x[..., 2 * n:]], dim=-1)
    a, b = x[..., 0:2 * n:2], x[..., 1:2 * n:2]
    return torch.cat([torch.stack([a * c - b * s, b * c + a * s], dim=-1).flatten(-2), x[..., 2 * n:]], dim=-1)


@pytest.mark.parametrize("style", ["half", "interleaved"])
@pytest.mark.parametrize("xpos", [False, True])
def test_gradients_equal_plain_torch(style, xpos):
    spec = ropekit.RopeSpec(24, rotary_dim=16, style=style, xpos=ropekit.Xpos(64.0) if xpos else None)
    q = torch.randn(2, 6, 3, 24, requires_grad=True)
    k = torch.randn(2, 6, 1, 24, requires_grad=True)
    gq, gk = torch.randn(2, 6, 3, 24), torch.randn(2, 6, 1, 24)
    qo, ko = rt.apply_rope(q, k, spec=spec, positions=4, xpos_center=3.0)
    torch.autograd.backward([qo, ko], [gq, gk])
    q2 = q.detach().clone().requires_grad_()
    k2 = k.detach().clone().requires_grad_()
    pos = torch.arange(6)[None].expand(2, 6) + 4
    zeta = ropekit.xpos_zeta(spec) if xpos else None
    rq = plain_torch_rope(q2, pos, ropekit.inv_freq(spec), style, zeta, 64.0, 3.0, 1.0)
    rk = plain_torch_rope(k2, pos, ropekit.inv_freq(spec), style, zeta, 64.0, 3.0, -1.0)
    torch.autograd.backward([rq, rk], [gq, gk])
    torch.testing.assert_close(qo, rq, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ko, rk, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(q.grad, q2.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(k.grad, k2.grad, rtol=1e-5, atol=1e-5)


def test_gradcheck_float32_linear_map():
    # Kernels are f32/f16/bf16 only; the map is linear, so central differences in float32 are exact up
    # to rounding (~1e-7 / eps): gradcheck with eps 1e-2 at 2e-3 tolerance checks the backward kernel.
    spec = ropekit.RopeSpec(8, style="interleaved", scaling=ropekit.Yarn(2.0, original_max=4),
                            xpos=ropekit.Xpos(16.0))
    q = torch.randn(1, 3, 2, 8, requires_grad=True)
    k = torch.randn(1, 3, 1, 8, requires_grad=True)
    ids = torch.tensor([[5, 0, 9]])
    fn = lambda a, b: rt.apply_rope(a, b, spec=spec, positions=ids, xpos_center=2.0)  # noqa: E731
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.autograd.gradcheck(fn, (q, k), eps=1e-2, atol=2e-3, rtol=2e-3)


def test_gradcheck_float64_reference_path_matches_kernel_vjp():
    # gradcheck in float64 on the plain formula, then the kernel's VJP equals that formula's VJP.
    spec = ropekit.RopeSpec(8)
    pos = torch.arange(3)[None] + 2
    x64 = torch.randn(1, 3, 2, 8, dtype=torch.float64, requires_grad=True)
    f = lambda x: plain_torch_rope(x, pos, ropekit.inv_freq(spec), "half")  # noqa: E731
    assert torch.autograd.gradcheck(f, (x64,))
    g = torch.randn(1, 3, 2, 8, dtype=torch.float64)
    (want,) = torch.autograd.grad(f(x64), x64, g)
    x32 = x64.detach().float().requires_grad_()
    (got,) = torch.autograd.grad(rt.apply_rope(x32, spec=spec, positions=2), x32, g.float())
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_packed_and_offsets_autograd():
    spec = ropekit.RopeSpec(16)
    q = torch.randn(7, 2, 16, requires_grad=True)
    cu = torch.tensor([0, 3, 7], dtype=torch.int32)
    out = rt.apply_rope(q, spec=spec, cu_seqlens=cu, offsets=torch.tensor([2, 0], dtype=torch.int32))
    out.square().sum().backward()
    # rotation is orthogonal: d/dq |R q|^2 = 2 q
    torch.testing.assert_close(q.grad, 2 * q.detach(), rtol=1e-5, atol=1e-5)


def test_rotary_embedding_module():
    spec = ropekit.RopeSpec(32, base=500000.0, scaling=ropekit.Llama3(8.0, original_max=16))
    m = rt.RotaryEmbedding(spec, max_positions=64)
    assert "llama3" in repr(m)
    q, k = torch.randn(2, 5, 4, 32), torch.randn(2, 5, 2, 32)
    qo, ko = m(q, k, positions=10)
    pos = np.broadcast_to(np.arange(5)[None] + 10, (2, 5))
    assert_close(qo.numpy(), rope(q.numpy(), pos, ropekit.inv_freq(spec)))
    assert_close(ko.numpy(), rope(k.numpy(), pos, ropekit.inv_freq(spec)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_tensors():
    if not ropekit._C.has_cuda:
        pytest.skip("ropekit built without the CUDA backend")
    spec = ropekit.RopeSpec(64)
    q = torch.randn(2, 8, 4, 64, device="cuda", requires_grad=True)
    out = rt.apply_rope(q, spec=spec, positions=3)
    want = rt.apply_rope(q.detach().cpu(), spec=spec, positions=3)
    torch.testing.assert_close(out.cpu(), want, rtol=1e-5, atol=1e-5)
    out.sum().backward()
    assert q.grad.is_cuda


@pytest.mark.skipif(TORCH_VERSION >= (2, 4), reason="covered by the custom-op tests")
def test_custom_op_needs_torch_2_4():
    assert not rt.HAS_CUSTOM_OP
    with pytest.raises(RuntimeError, match="torch >= 2.4"):
        rt.rope_op(torch.zeros(1, 1, 1, 8), torch.zeros(1, 1, 1, 8), 0)


@pytest.mark.skipif(TORCH_VERSION < (2, 4), reason=f"torch.library.custom_op and torch.compile need torch >= 2.4 "
                                                    f"(this is torch {torch.__version__})")
def test_custom_op_compile_fullgraph_matches_eager():
    spec = ropekit.RopeSpec(32)
    handle = rt.register_table(ropekit.RopeTable(spec, 64))
    q = torch.randn(2, 8, 4, 32, requires_grad=True)
    k = torch.randn(2, 8, 2, 32, requires_grad=True)

    def f(q, k):
        a, b = rt.rope_op(q, k, handle, 3)
        return (a * 2).sum() + b.square().sum()

    compiled = torch.compile(f, fullgraph=True)
    eager = f(q, k)
    got = compiled(q, k)
    torch.testing.assert_close(got, eager)
    ge = torch.autograd.grad(eager, (q, k))
    gc = torch.autograd.grad(compiled(q, k), (q, k))
    for a, b in zip(ge, gc):
        torch.testing.assert_close(a, b)


def test_spec_path_follows_dynamic_ntk_like_the_functional_api():
    # A table grown for a long call takes the sequence-length rules (dynamic NTK rescales past
    # original_max), so torch's spec= path and ropekit.apply_rope(spec=) rotate alike.
    spec = ropekit.RopeSpec(16, scaling=ropekit.DynamicNtk(2.0, original_max=64))
    q = torch.randn(1, 200, 2, 16, dtype=torch.float32)
    want = ropekit.apply_rope(q.numpy(), spec=spec)
    got = rt.apply_rope(q, spec=spec)
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=0)
    unscaled = ropekit.apply_rope(q.numpy(), spec=ropekit.RopeSpec(16))
    assert np.abs(got.numpy() - unscaled).max() > 1e-3  # the rescale did happen
