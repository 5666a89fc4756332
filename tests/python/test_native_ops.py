"""The native torch operators (ropekit/_torch_ops.so): opcheck, torch.compile(fullgraph=True) with
the eager and inductor backends, gradcheck and double backward, handles, in-place semantics, and
the Python custom ops that take over where the library is absent or turned off."""
import gc
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import ropekit
import ropekit.torch as rt
from reference import assert_close, rope

native = pytest.mark.skipif(not rt.NATIVE_OPS, reason="ropekit built without _torch_ops.so (or ROPEKIT_TORCH_OPS=0)")
SO = os.path.join(os.path.dirname(rt.__file__), "_torch_ops.so")


def test_native_ops_are_loaded_where_built():
    # CI sets ROPEKIT_EXPECT_NATIVE_OPS=1: a build that silently lost the library fails here.
    if os.environ.get("ROPEKIT_EXPECT_NATIVE_OPS") == "1":
        assert os.path.exists(SO) and rt.NATIVE_OPS
    if os.path.exists(SO) and os.environ.get("ROPEKIT_TORCH_OPS", "1") != "0":
        assert rt.NATIVE_OPS
    schema = str(torch.ops.ropekit.rope.default._schema)
    assert schema.startswith("ropekit::rope(Tensor q, Tensor k, SymInt table, SymInt start")


def rope_args(handle, kind, dtype=torch.float32, requires_grad=True):
    q = torch.randn(2, 3, 2, 16, dtype=dtype, requires_grad=requires_grad)
    k = torch.randn(2, 3, 1, 16, dtype=dtype, requires_grad=requires_grad)
    offsets = torch.tensor([4, 0]) if kind == "offsets" else None
    ids = torch.tensor([[1, 7, 2], [0, 0, 3]]) if kind == "ids" else None
    cu_seqlens = None
    if kind == "packed":
        q, k = (t.detach().reshape(6, t.shape[2], 16).requires_grad_(requires_grad) for t in (q, k))
        cu_seqlens = torch.tensor([0, 2, 6], dtype=torch.int32)
    if kind == "k_only":
        q = torch.randn(2, 3, 0, 16, dtype=dtype, requires_grad=requires_grad)
    return (q, k, handle, 2 if kind == "start" else 0, offsets, ids, cu_seqlens, 0, 1.5, False, 0)


SPEC = ropekit.RopeSpec(16, xpos=ropekit.Xpos(32.0))
DYNAMIC = ropekit.RopeSpec(16, scaling=ropekit.DynamicNtk(2.0, original_max=4))


@native
@pytest.mark.parametrize("kind", ["start", "offsets", "ids", "packed", "k_only"])
def test_opcheck_rope_and_rope_inplace(kind):
    table = ropekit.RopeTable(SPEC, 4)
    module = rt.RotaryEmbedding(DYNAMIC)  # alive while its handle is used
    for handle in (rt.register_table(table), rt.register_table(SPEC), rt._handle(module._rope)):
        torch.library.opcheck(torch.ops.ropekit.rope.default, rope_args(handle, kind))
        args = rope_args(handle, kind, requires_grad=False)
        torch.library.opcheck(torch.ops.ropekit.rope_.default, args)
        torch.library.opcheck(torch.ops.ropekit.rope_.default, (args[0], None) + args[2:])


@native
def test_opcheck_rotary_embedding():
    spec = ropekit.RopeSpec(head_dim=64, rotary_dim=32)
    cache = torch.from_numpy(ropekit.cos_sin_cache(spec, 64))
    positions = torch.randint(0, 64, (6,))
    for key in (torch.randn(6, 2, 64), None):
        torch.library.opcheck(torch.ops.ropekit.rotary_embedding.default,
                              (positions, torch.randn(6, 4, 64), key, 64, cache, True, 16, False, 0))
        torch.library.opcheck(torch.ops.ropekit.rotary_embedding.default,
                              (positions.int(), torch.randn(2, 3, 4 * 64), key, 64, cache, False, 0, True, 0))


@native  # in place through ropekit.apply_rope compiles only as the native op
@pytest.mark.parametrize("backend", ["eager", "inductor"])
def test_compile_fullgraph_every_decode_entry_point(backend):
    spec = ropekit.RopeSpec(32, base=500000.0)
    table = ropekit.RopeTable(spec, 64)
    cache = torch.from_numpy(ropekit.cos_sin_cache(spec, 64))

    def step(q, k, qi, ki, positions):
        a, b = rt.apply_rope(q, k, table=table, positions=5)  # autograd
        with torch.no_grad():
            ropekit.apply_rope(qi, ki, table=table, positions=7, inplace=True)
        qe, ke = qi.clone().view(qi.shape[0], -1), ki.clone().view(ki.shape[0], -1)
        rt.rotary_embedding(positions, qe, ke, 32, cache, True)
        return (a * 2).sum() + b.square().sum(), qi + 1, ki, qe, ke

    def inputs():
        g = torch.Generator().manual_seed(0)
        q = torch.randn(1, 1, 4, 32, generator=g, requires_grad=True)
        k = torch.randn(1, 1, 2, 32, generator=g, requires_grad=True)
        qi, ki = torch.randn(1, 1, 4, 32, generator=g), torch.randn(1, 1, 2, 32, generator=g)
        return q, k, qi, ki, torch.tensor([9])

    torch._dynamo.reset()
    compiled = torch.compile(step, fullgraph=True, backend=backend)
    want_in, got_in = inputs(), inputs()
    want, got = step(*want_in), compiled(*got_in)
    for a, b in zip(want, got):
        torch.testing.assert_close(a, b)
    for a, b in zip(want_in[2:4], got_in[2:4]):  # the in-place writes happened in the compiled graph too
        torch.testing.assert_close(a, b)
    ge = torch.autograd.grad(want[0], want_in[:2])
    gc_ = torch.autograd.grad(got[0], got_in[:2])
    for a, b in zip(ge, gc_):
        torch.testing.assert_close(a, b)


def test_compile_dynamic_shapes_apply_rope():
    spec = ropekit.RopeSpec(16)
    table = ropekit.RopeTable(spec, 64)
    torch._dynamo.reset()
    compiled = torch.compile(lambda q, k: rt.apply_rope(q, k, table=table, positions=3), fullgraph=True,
                             dynamic=True, backend="aot_eager")
    for seq in (2, 5, 9):
        q = torch.randn(2, seq, 3, 16, requires_grad=True)
        k = torch.randn(2, seq, 1, 16, requires_grad=True)
        got = compiled(q, k)
        want = rt.apply_rope(q, k, table=table, positions=3)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        torch.autograd.grad(got[0].sum() + got[1].sum(), (q, k))


@native
@pytest.mark.parametrize("kind", ["start", "ids", "k_only"])
def test_gradcheck_and_gradgradcheck_native_op(kind):
    spec = ropekit.RopeSpec(8, style="interleaved", scaling=ropekit.Yarn(2.0, original_max=4), xpos=ropekit.Xpos(16.0))
    handle = rt.register_table(ropekit.RopeTable(spec, 3))
    q, k, *rest = rope_args(handle, kind, torch.float64)
    q, k = q[..., :8].detach().requires_grad_(), k[..., :8].detach().requires_grad_()
    op = torch.ops.ropekit.rope.default
    fn = lambda a, b: op(a, b, *rest)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (q, k))
    assert torch.autograd.gradgradcheck(fn, (q, k))
    # one side only: the other gets no gradient, and no rotation is spent on it
    (g,) = torch.autograd.grad(fn(q, k)[1].sum(), (k,))
    assert g.shape == k.shape


def test_eager_graph_keeps_its_table_alive():
    spec = ropekit.RopeSpec(16)
    q = torch.randn(1, 4, 2, 16, requires_grad=True)
    out = rt.apply_rope(q, table=ropekit.RopeTable(spec, 8), positions=1)  # the table dies right here
    gc.collect()
    g = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, q, g)
    pos = np.arange(4)[None] + 1
    assert_close(grad.numpy(), rope(g.numpy(), pos, ropekit.inv_freq(spec), direction="backward"))


@native
def test_stale_and_unknown_handles_are_value_errors():
    q, k = torch.randn(1, 2, 2, 16), torch.randn(1, 2, 1, 16)
    op = torch.ops.ropekit.rope.default
    with pytest.raises(ValueError, match="table: handle 1000000000 names no live ropekit table"):
        op(q, k, 10 ** 9, 0, None, None, None, 0, 0.0, False, 0)
    handle = rt._handle(ropekit.RopeTable(SPEC, 4))  # weak: forgotten when the table dies
    gc.collect()
    with pytest.raises(ValueError, match=f"table: handle {handle} names no live"):
        op(q, k, handle, 0, None, None, None, 0, 0.0, False, 0)
    with pytest.raises(ValueError, match="direction: expected 0"):
        op(q, k, rt.register_table(SPEC), 0, None, None, None, 7, 0.0, False, 0)
    with pytest.raises(TypeError, match="q: expected dtype float32, float16, bfloat16 or float64, got int32"):
        op(q.int(), k, rt.register_table(SPEC), 0, None, None, None, 0, 0.0, False, 0)


@native
def test_in_place_op_values_versions_and_refusals():
    table = ropekit.RopeTable(SPEC, 16)
    q, k = torch.randn(2, 3, 2, 16), torch.randn(2, 3, 1, 16)
    want_q, want_k = rt.apply_rope(q, k, table=table, positions=4)
    v = q._version, k._version
    assert ropekit.apply_rope(q, k, table=table, positions=4, inplace=True)[0] is q
    assert q._version > v[0] and k._version > v[1]
    assert torch.equal(q, want_q) and torch.equal(k, want_k)
    leaf = torch.randn(2, 3, 2, 16, requires_grad=True)
    for call in (lambda: ropekit.apply_rope(leaf, table=table, inplace=True),
                 lambda: torch.ops.ropekit.rope_(leaf, None, rt.register_table(table), 0, None, None, None, 0, 0.0,
                                                 False, 0)):
        with pytest.raises(ValueError, match="^q: requires grad"):
            call()
    cache = torch.from_numpy(ropekit.cos_sin_cache(SPEC, 16))
    with pytest.raises(ValueError, match="^key: requires grad"):
        rt.rotary_embedding(torch.tensor([1, 2]), torch.randn(2, 32), torch.randn(2, 16, requires_grad=True), 16,
                            cache, True)


FALLBACK = r"""
import torch, ropekit, ropekit.torch as rt
assert not rt.NATIVE_OPS
spec = ropekit.RopeSpec(16)
table = ropekit.RopeTable(spec, 8)
q = torch.randn(1, 3, 2, 16, requires_grad=True)
out = rt.apply_rope(q, table=table, positions=2)
out.sum().backward()
x = q.detach().clone()
ropekit.apply_rope(x, table=table, positions=2, inplace=True)
torch.testing.assert_close(x, out.detach())
cache = torch.from_numpy(ropekit.cos_sin_cache(spec, 8))
y = torch.randn(3, 32)
ropekit.rotary_embedding(torch.tensor([0, 1, 2]), y, None, 16, cache, True)
f = torch.compile(lambda q: rt.apply_rope(q, table=table, positions=2), fullgraph=True, backend="eager")
torch.testing.assert_close(f(q), out)
print("ok")
"""


def run_fallback(env_extra, pythonpath=None):
    env = dict(os.environ, **env_extra)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", FALLBACK], env=env, capture_output=True, text=True, timeout=300,
                       cwd=pythonpath or os.getcwd())
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


def test_python_custom_ops_when_turned_off():
    run_fallback({"ROPEKIT_TORCH_OPS": "0"})


def test_package_without_the_library_imports_and_falls_back(tmp_path):
    # A copy of the installed package without _torch_ops.so: what a build without torch installs.
    pkg = os.path.dirname(ropekit.__file__)
    shutil.copytree(pkg, tmp_path / "ropekit", ignore=shutil.ignore_patterns("_torch_ops*", "__pycache__"))
    run_fallback({"ROPEKIT_TORCH_OPS": "1"}, pythonpath=str(tmp_path))
