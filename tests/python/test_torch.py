"""ropekit.torch: autograd through the backward kernel, nn.Module, custom op / torch.compile."""
import numpy as np
import pytest
import torch

import ropekit
import ropekit.torch as rt
from reference import assert_close, rope


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
    # The map is linear, so central differences in float32 are exact up to rounding (~1e-7 / eps):
    # gradcheck with eps 1e-2 at 2e-3 tolerance checks the float32 backward kernel.
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


# --- ropekit.apply_rope on torch tensors and autograd (DLPack writes) -------------------------------------

SPEC16 = ropekit.RopeSpec(16, style="interleaved", xpos=ropekit.Xpos(32.0))


def test_inplace_write_bumps_the_version_counter():
    # Before the fix the kernel wrote through DLPack unseen: backward used the rotated x silently.
    w = torch.randn(1, 4, 2, 16, requires_grad=True)
    x = torch.randn(1, 4, 2, 16)
    loss = (w * x).sum()  # autograd saves x for w's gradient
    version = x._version
    ropekit.apply_rope(x, spec=SPEC16, inplace=True)
    assert x._version > version
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
    # the same for an output the caller passes
    out = torch.zeros(1, 4, 2, 16)
    loss = (w * out).sum()
    ropekit.apply_rope(torch.randn(1, 4, 2, 16), spec=SPEC16, q_out=out)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_functional_api_on_tensors_that_require_grad_is_differentiable():
    # Before the fix the result was silently detached (requires_grad False, no gradient for q, k).
    q = torch.randn(2, 5, 3, 16, requires_grad=True)
    k = torch.randn(2, 5, 1, 16, requires_grad=True)
    qo, ko = ropekit.apply_rope(q, k, spec=SPEC16, positions=7, xpos_center=2.0)
    assert qo.requires_grad and ko.requires_grad
    gq, gk = torch.randn_like(qo), torch.randn_like(ko)
    torch.autograd.backward([qo, ko], [gq, gk])
    pos = np.broadcast_to(np.arange(5)[None] + 7, (2, 5))
    f, z = ropekit.inv_freq(SPEC16), ropekit.xpos_zeta(SPEC16)
    assert_close(qo.detach().numpy(), rope(q.detach().numpy(), pos, f, "interleaved", xpos=(z, 32.0, 2.0)))
    assert_close(q.grad.numpy(), rope(gq.numpy(), pos, f, "interleaved", direction="backward", xpos=(z, 32.0, 2.0)))
    assert_close(k.grad.numpy(), rope(gk.numpy(), pos, f, "interleaved", direction="backward",
                                      xpos=(z, 32.0, 2.0), sign=-1.0))
    # under no_grad the plain kernel call, no graph
    with torch.no_grad():
        assert not ropekit.apply_rope(q, spec=SPEC16).requires_grad


def test_functional_api_refuses_undifferentiable_writes_on_tensors_that_require_grad():
    leaf = torch.randn(1, 4, 2, 16, requires_grad=True)
    q = leaf * 1.0  # a non-leaf that requires grad: torch itself would allow an in-place op on it
    before = q.detach().clone()
    with pytest.raises(ValueError, match="^q: requires grad"):
        ropekit.apply_rope(q, spec=SPEC16, inplace=True)
    k = torch.randn(1, 4, 1, 16, requires_grad=True)
    with pytest.raises(ValueError, match="^k: requires grad"):
        ropekit.apply_rope(torch.randn(1, 4, 2, 16), k, spec=SPEC16, inplace=True)
    out = torch.zeros(1, 4, 2, 16)
    with pytest.raises(ValueError, match="^q_out: q requires grad"):
        ropekit.apply_rope(q, spec=SPEC16, q_out=out)
    with pytest.raises(ValueError, match="^q_out: requires grad"):
        ropekit.apply_rope(torch.randn(1, 4, 2, 16), spec=SPEC16, q_out=torch.zeros(1, 4, 2, 16, requires_grad=True))
    assert torch.equal(q.detach(), before) and not out.any()
    with torch.no_grad():  # allowed without grad mode, and counted as a modification
        version = q._version
        ropekit.apply_rope(q, spec=SPEC16, inplace=True)
        assert q._version > version and not torch.equal(q, before)


# --- higher derivatives ---------------------------------------------------------------------------------------

def hvp_case(apply, dtype):
    spec = ropekit.RopeSpec(16, rotary_dim=12, style="half", xpos=ropekit.Xpos(16.0))
    g = torch.Generator().manual_seed(3)
    q, k, vq, vk = (torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
                    for shape in ((2, 4, 3, 16), (2, 4, 1, 16), (2, 4, 3, 16), (2, 4, 1, 16)))
    q.requires_grad_()
    k.requires_grad_()

    def loss(q, k):
        qo, ko = apply(q, k, spec)
        return (qo ** 3).sum() + (ko ** 2 * ko.sum()).sum()

    gq, gk = torch.autograd.grad(loss(q, k), (q, k), create_graph=True)
    hq, hk = torch.autograd.grad((gq * vq).sum() + (gk * vk).sum(), (q, k))
    return spec, q, k, vq, vk, loss, hq, hk


def plain_apply(q, k, spec):
    pos = torch.arange(4)[None].expand(2, 4) + 2
    zeta = ropekit.xpos_zeta(spec)
    return (plain_torch_rope(q, pos, ropekit.inv_freq(spec), "half", zeta, 16.0, 1.0, 1.0),
            plain_torch_rope(k, pos, ropekit.inv_freq(spec), "half", zeta, 16.0, 1.0, -1.0))


APPLIES = {
    "apply_rope": lambda q, k, spec: rt.apply_rope(q, k, spec=spec, positions=2, xpos_center=1.0),
    "table": lambda q, k, spec: rt.apply_rope(q, k, table=ropekit.RopeTable(spec, 3), positions=2, xpos_center=1.0),
    "module": lambda q, k, spec: rt.RotaryEmbedding(spec)(q, k, positions=2, xpos_center=1.0),
    "functional": lambda q, k, spec: ropekit.apply_rope(q, k, spec=spec, positions=2, xpos_center=1.0),
    "custom_op": lambda q, k, spec: rt.rope_op(q, k, rt.register_table(ropekit.RopeTable(spec, 3)), 2, 1.0),
}


@pytest.mark.parametrize("entry", APPLIES)
def test_hessian_vector_product_equals_plain_torch(entry):
    # Before the fix the backward ran outside autograd: the HVP of sum(y^3) came out 4x instead of 6x.
    _, q, k, vq, vk, _, hq, hk = hvp_case(APPLIES[entry], torch.float32)
    _, q2, k2, _, _, _, want_q, want_k = hvp_case(plain_apply, torch.float64)
    torch.testing.assert_close(hq.double(), want_q, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(hk.double(), want_k, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("entry", APPLIES)
def test_gradcheck_and_gradgradcheck_float64(entry):
    spec = ropekit.RopeSpec(8, style="interleaved", scaling=ropekit.Yarn(2.0, original_max=4), xpos=ropekit.Xpos(16.0))
    q = torch.randn(1, 3, 2, 8, dtype=torch.float64, requires_grad=True)
    k = torch.randn(1, 3, 1, 8, dtype=torch.float64, requires_grad=True)
    fn = lambda a, b: APPLIES[entry](a, b, spec)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (q, k))
    assert torch.autograd.gradgradcheck(fn, (q, k))


def test_float64_values_and_ids_gradcheck():
    spec = ropekit.RopeSpec(24, rotary_dim=16, scaling=ropekit.DynamicNtk(2.0, original_max=4))
    q = torch.randn(2, 3, 2, 24, dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([[5, 0, 9], [1, 2, 3]])
    out = rt.apply_rope(q, spec=spec, positions=ids)
    assert out.dtype == torch.float64
    # double arithmetic with the float32 cos/sin: float32 coefficient rounding only
    assert_close(out.detach().numpy(), rope(q.detach().numpy(), ids.numpy(), ropekit.inv_freq(spec, 10)), "float64")
    assert torch.autograd.gradgradcheck(lambda a: rt.apply_rope(a, spec=spec, positions=ids), (q,))
    x = np.random.default_rng(0).standard_normal((1, 6, 2, 24))
    got = ropekit.apply_rope(x, spec=spec, positions=3)
    assert got.dtype == np.float64
    assert_close(got, rope(x, np.arange(6)[None] + 3, ropekit.inv_freq(spec, 9)), "float64")


# --- torch.compile and the custom op ------------------------------------------------------------------------

def test_compile_fullgraph_apply_rope_matches_eager():
    spec = ropekit.RopeSpec(32, xpos=ropekit.Xpos(64.0))
    table = ropekit.RopeTable(spec, 8)
    q = torch.randn(2, 8, 4, 32, requires_grad=True)
    k = torch.randn(2, 8, 2, 32, requires_grad=True)
    ids = torch.randint(0, 50, (2, 8))

    def loss(q, k):
        # every path in one graph: one compile
        a, b = rt.apply_rope(q, k, table=table, positions=3, xpos_center=2.0)
        c, d = rt.apply_rope(q, k, spec=spec, positions=ids)
        e = rt.apply_rope(None, k, table=table, positions=1)
        f, h = ropekit.apply_rope(q, k, spec=spec, offsets=[3, 9])
        return ((a ** 2).sum() + (b * 3).sum() + (c * a).sum() + (d ** 3).sum() + (e * 5).sum() + (f ** 2).sum()
                + (h * b).sum())

    torch._dynamo.reset()
    # aot_eager: dynamo's full graph and AOT autograd without inductor's code generation (slow here);
    # the inductor backend runs in the other compile tests.
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    eager = loss(q, k)
    got = compiled(q, k)
    torch.testing.assert_close(got, eager)
    ge = torch.autograd.grad(eager, (q, k))
    gc = torch.autograd.grad(compiled(q, k), (q, k))
    for a, b in zip(ge, gc):
        torch.testing.assert_close(a, b)


def test_compile_fullgraph_rotary_embedding_dynamic_ntk():
    spec = ropekit.RopeSpec(32, scaling=ropekit.DynamicNtk(4.0, original_max=16))
    m = rt.RotaryEmbedding(spec, max_positions=8)
    torch._dynamo.reset()
    compiled = torch.compile(m, fullgraph=True)
    for start, seq in ((0, 8), (40, 8), (0, 8), (100, 1)):  # inside original_max, past it, back inside
        q = torch.randn(2, seq, 4, 32, requires_grad=True)
        k = torch.randn(2, seq, 2, 32)
        got_q, got_k = compiled(q, k, positions=start)
        want_q, want_k = m(q, k, positions=start)
        torch.testing.assert_close(got_q, want_q, rtol=0, atol=0)
        torch.testing.assert_close(got_k, want_k, rtol=0, atol=0)
        pos = np.broadcast_to(np.arange(seq)[None] + start, (2, seq))
        assert_close(got_q.detach().numpy(), rope(q.detach().numpy(), pos, ropekit.inv_freq(spec, start + seq)))
        g = torch.randn_like(got_q)
        (grad,) = torch.autograd.grad(got_q, q, g)
        assert_close(grad.numpy(), rope(g.numpy(), pos, ropekit.inv_freq(spec, start + seq), direction="backward"))


def test_opcheck_custom_op():
    spec = ropekit.RopeSpec(16, xpos=ropekit.Xpos(32.0))
    dynamic = ropekit.RopeSpec(16, scaling=ropekit.DynamicNtk(2.0, original_max=4))
    table = ropekit.RopeTable(spec, 4)
    module = rt.RotaryEmbedding(dynamic)  # alive while its handle is used
    handles = {"table": rt.register_table(table), "spec": rt.register_table(spec), "dynamic": rt._handle(module._rope)}
    for name, handle in handles.items():
        for kind in ("start", "offsets", "ids", "k_only"):
            q = torch.randn(2, 3, 2, 16, requires_grad=True)
            k = torch.randn(2, 3, 1, 16, requires_grad=True)
            offsets = torch.tensor([4, 0]) if kind == "offsets" else None
            ids = torch.tensor([[1, 7, 2], [0, 0, 3]]) if kind == "ids" else None
            if kind == "k_only":
                q = torch.randn(2, 3, 0, 16, requires_grad=True)
            args = (q, k, handle, 2 if kind == "start" else 0, offsets, ids, None, 0, 1.5, False, 0)
            torch.library.opcheck(rt._rope_op, args)


def test_custom_op_values():
    spec = ropekit.RopeSpec(32)
    handle = rt.register_table(ropekit.RopeTable(spec, 64))
    q, k = torch.randn(2, 8, 4, 32), torch.randn(2, 8, 2, 32)
    a, b = rt.rope_op(q, k, handle, 3)
    pos = np.broadcast_to(np.arange(8)[None] + 3, (2, 8))
    assert_close(a.numpy(), rope(q.numpy(), pos, ropekit.inv_freq(spec)))
    assert_close(b.numpy(), rope(k.numpy(), pos, ropekit.inv_freq(spec)))
    with pytest.raises(ValueError, match="table: handle"):
        rt.rope_op(q, k, 10 ** 9, 3)
