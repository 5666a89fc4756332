"""Schemes whose frequencies follow the call's length (dynamic NTK, LongRoPE) across calls on one
module / table: a backward uses its own forward's frequencies, and a short call after a long one
uses the short frequencies (as spec= and HF). References: HF's formulas in float64, written here."""
import math

import numpy as np
import pytest
import torch

import ropekit
import ropekit.torch as rt
from reference import assert_close, rope

DIM, BASE, ORIGINAL = 64, 10000.0, 256
SHORT = np.linspace(1.0, 1.3, DIM // 2).tolist()
LONG = np.linspace(1.0, 6.0, DIM // 2).tolist()


def hf_exponent(dim):
    # torch.arange(0, dim, 2).float() / dim, in float32 as HF computes it
    return (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)).astype(np.float64)


def hf_dynamic_ntk(factor, seq_len):
    base = BASE
    if seq_len > ORIGINAL:
        base = BASE * ((factor * seq_len / ORIGINAL) - (factor - 1)) ** (DIM / (DIM - 2))
    return 1.0 / base ** hf_exponent(DIM)


def hf_longrope(seq_len):
    ext = np.asarray(LONG if seq_len > ORIGINAL else SHORT)
    return 1.0 / (ext * BASE ** hf_exponent(DIM))


def hf_longrope_attention(factor):
    return math.sqrt(1 + math.log(factor) / math.log(ORIGINAL))


DYNAMIC = ropekit.RopeSpec(DIM, base=BASE, scaling=ropekit.DynamicNtk(4.0, original_max=ORIGINAL))
LONGROPE = ropekit.RopeSpec(DIM, base=BASE, scaling=ropekit.LongRope(SHORT, LONG, original_max=ORIGINAL, factor=8.0))


def reference(spec, seq_len):
    """(inv_freq, attention factor) of HF for a forward over seq_len positions."""
    if spec is DYNAMIC:
        return hf_dynamic_ntk(4.0, seq_len), 1.0
    return hf_longrope(seq_len), hf_longrope_attention(8.0)


@pytest.mark.parametrize("spec", [DYNAMIC, LONGROPE], ids=["dynamic_ntk", "longrope"])
@pytest.mark.parametrize("n", [100, 256, 257, 2000])
def test_core_frequencies_are_hf(spec, n):
    want, attention = reference(spec, n)
    np.testing.assert_allclose(ropekit.inv_freq(spec, n), want, rtol=1e-6)
    assert ropekit.attention_factor(spec) == pytest.approx(attention, rel=1e-12)


def grid(n, start=0):
    return np.broadcast_to(np.arange(n)[None] + start, (1, n))


# --- defect 2: the backward of an earlier forward ----------------------------------------------------------

CALLERS = ["module", "module_with_rows", "spec", "functional_torch"]


def make_caller(kind, spec):
    if kind == "module":
        return rt.RotaryEmbedding(spec)
    if kind == "module_with_rows":
        return rt.RotaryEmbedding(spec, max_positions=512)
    if kind == "spec":
        return lambda q: rt.apply_rope(q, spec=spec)
    return lambda q: ropekit.apply_rope(q, spec=spec)  # requires grad: routed through autograd


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("spec", [DYNAMIC, LONGROPE], ids=["dynamic_ntk", "longrope"])
@pytest.mark.parametrize("first, second", [(200, 2000), (2000, 200)])
def test_backward_of_an_earlier_forward_uses_its_frequencies(caller, spec, first, second):
    call = make_caller(caller, spec)
    torch.manual_seed(0)
    qa = torch.randn(1, first, 2, DIM, requires_grad=True)
    qb = torch.randn(1, second, 2, DIM, requires_grad=True)
    out_a = call(qa)
    out_b = call(qb)  # another length on the same module / spec before A's backward
    ga, gb = torch.randn_like(out_a), torch.randn_like(out_b)
    (grad_a,) = torch.autograd.grad(out_a, qa, ga)
    (grad_b,) = torch.autograd.grad(out_b, qb, gb)
    for n, q, g, out, grad in ((first, qa, ga, out_a, grad_a), (second, qb, gb, out_b, grad_b)):
        inv, attention = reference(spec, n)
        assert_close(out.detach().numpy(), rope(q.detach().numpy(), grid(n), inv, attention=attention))
        assert_close(grad.numpy(), rope(g.numpy(), grid(n), inv, attention=attention, direction="backward"))


def test_backward_equals_autograd_of_plain_torch():
    # The 200-token case of the report: DynamicNtk(4, original_max=256), a 2000-token forward between.
    m = rt.RotaryEmbedding(DYNAMIC)
    q = torch.randn(1, 200, 2, DIM, dtype=torch.float32, requires_grad=True)
    out = m(q)
    m(torch.randn(1, 2000, 2, DIM))
    g = torch.randn_like(out)
    (got,) = torch.autograd.grad(out, q, g)
    q64 = q.detach().double().requires_grad_()
    inv = torch.from_numpy(hf_dynamic_ntk(4.0, 200)).float()
    ang = (torch.arange(200, dtype=torch.float32)[:, None] * inv[None]).double()[None, :, None, :]
    a, b = q64[..., : DIM // 2], q64[..., DIM // 2:]
    plain = torch.cat([a * ang.cos() - b * ang.sin(), b * ang.cos() + a * ang.sin()], dim=-1)
    (want,) = torch.autograd.grad(plain, q64, g.double())
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


# --- defect 3: a short call after a long one ---------------------------------------------------------------

@pytest.mark.parametrize("spec", [DYNAMIC, LONGROPE], ids=["dynamic_ntk", "longrope"])
def test_short_call_after_long_call_module(spec):
    m = rt.RotaryEmbedding(spec, max_positions=64)
    long_q = torch.randn(1, 1500, 2, DIM)
    short_q = torch.randn(1, 100, 2, DIM)
    before = m(short_q)
    m(long_q)
    after = m(short_q)
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    torch.testing.assert_close(after, rt.apply_rope(short_q, spec=spec), rtol=1e-6, atol=1e-6)
    inv, attention = reference(spec, 100)
    assert_close(after.numpy(), rope(short_q.numpy(), grid(100), inv, attention=attention))
    # and a decode step past original_max after the long call still takes the long frequencies
    step = m(short_q[:, :1], positions=1499)
    inv, attention = reference(spec, 1500)
    assert_close(step.numpy(), rope(short_q[:, :1].numpy(), grid(1, 1499), inv, attention=attention))


@pytest.mark.parametrize("spec", [DYNAMIC, LONGROPE], ids=["dynamic_ntk", "longrope"])
def test_short_call_after_long_call_shared_table(spec):
    table = ropekit.RopeTable(spec, 64)
    rng = np.random.default_rng(1)
    long_q = rng.standard_normal((1, 1500, 2, DIM)).astype(np.float32)
    short_q = rng.standard_normal((1, 100, 2, DIM)).astype(np.float32)
    for call in (ropekit.apply_rope, lambda q, **kw: rt.apply_rope(torch.from_numpy(q), **kw).numpy()):
        long_out = call(long_q, table=table)
        short_out = call(short_q, table=table)
        # A table rotates with its own frequencies at every position: the original ones here.
        inv, attention = reference(spec, 0)
        assert_close(long_out, rope(long_q, grid(1500), inv, attention=attention))
        assert_close(short_out, rope(short_q, grid(100), inv, attention=attention))
        np.testing.assert_allclose(short_out, ropekit.apply_rope(short_q, spec=spec), rtol=1e-6, atol=1e-6)
        assert table.size == 64 and table.seq_len == 0
    # A table made for the long length keeps the long frequencies, short calls included.
    long_table = table.for_seq_len(1500)
    assert long_table.seq_len != 0 and table.seq_len == 0
    inv, attention = reference(spec, 1500)
    assert_close(ropekit.apply_rope(short_q, table=long_table), rope(short_q, grid(100), inv, attention=attention))
