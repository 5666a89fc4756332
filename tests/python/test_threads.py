"""Python threads sharing one RopeTable / one ropekit.torch.RotaryEmbedding, one of them calling at
larger positions (past the table's rows, past original_max for dynamic NTK). The kernel runs with the
GIL released. Before the redesign the binding grew the shared table under the GIL and released it in
the kernel, so the other thread read rows that were being replaced; every result here must be
bit-identical to a single-threaded run."""
import threading

import numpy as np
import pytest
import torch

import ropekit
import ropekit.torch as rt
from reference import assert_close, rope

ROUNDS = 8
SPECS = {
    "plain": ropekit.RopeSpec(128),
    "dynamic_ntk": ropekit.RopeSpec(128, scaling=ropekit.DynamicNtk(4.0, original_max=256)),
}
# (batch, seq, heads, head_dim): 4 MB of float32 per call, long enough in the kernel for threads to overlap.
SHAPE = (2, 128, 32, 128)
STARTS = (0, 5000)  # inside the 64-row table and original_max / far past both


def inputs(seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(SHAPE).astype(np.float32) + 0.1


def run_together(calls):
    """Runs each call ROUNDS times in its own thread, all threads released together; returns the results."""
    barrier = threading.Barrier(len(calls))
    results = [[] for _ in calls]
    errors = []

    def worker(i, call):
        try:
            barrier.wait()
            for _ in range(ROUNDS):
                results[i].append(call())
        except BaseException as e:  # re-raised in the main thread
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def check(calls, equal):
    alone = [c() for c in calls]
    for per_thread, want in zip(run_together(calls), alone):
        assert len(per_thread) == ROUNDS
        for got in per_thread:
            assert equal(got, want)


@pytest.mark.parametrize("name", SPECS)
def test_numpy_shared_table(name):
    spec = SPECS[name]
    table = ropekit.RopeTable(spec, 64)
    xs = [inputs(i) for i in range(len(STARTS))]
    calls = [lambda x=x, s=s: ropekit.apply_rope(x, table=table, positions=s) for x, s in zip(xs, STARTS)]
    calls += [lambda x=x, s=s: ropekit.apply_rope(x, spec=spec, positions=s) for x, s in zip(xs, STARTS)]
    check(calls, np.array_equal)
    assert table.size == 64 and table.seq_len == 0  # never changed
    # And the single-threaded values are right (the table's frequencies at every position).
    pos = np.broadcast_to(np.arange(SHAPE[1])[None] + STARTS[1], SHAPE[:2])
    assert_close(calls[1](), rope(xs[1], pos, ropekit.inv_freq(spec)))


@pytest.mark.parametrize("name", SPECS)
def test_torch_shared_table(name):
    spec = SPECS[name]
    table = ropekit.RopeTable(spec, 64)
    xs = [torch.from_numpy(inputs(10 + i)) for i in range(len(STARTS))]
    calls = [lambda x=x, s=s: ropekit.apply_rope(x, table=table, positions=s) for x, s in zip(xs, STARTS)]
    calls += [lambda x=x, s=s: rt.apply_rope(x, table=table, positions=s) for x, s in zip(xs, STARTS)]
    check(calls, torch.equal)
    assert table.size == 64


@pytest.mark.parametrize("name", SPECS)
def test_torch_shared_rotary_embedding_forward_and_backward(name):
    spec = SPECS[name]
    module = rt.RotaryEmbedding(spec, max_positions=64)
    qs = [torch.from_numpy(inputs(20 + i)) for i in range(len(STARTS))]
    g = torch.from_numpy(inputs(30))

    def call(q, start):
        q = q.clone().requires_grad_()
        out = module(q, positions=start)
        (grad,) = torch.autograd.grad(out, q, g)
        return out.detach(), grad

    calls = [lambda q=q, s=s: call(q, s) for q, s in zip(qs, STARTS)]
    check(calls, lambda a, b: torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]))
    # The long call's values: dynamic NTK frequencies for its length (largest position + 1).
    out, grad = calls[1]()
    n = STARTS[1] + SHAPE[1]
    pos = np.broadcast_to(np.arange(SHAPE[1])[None] + STARTS[1], SHAPE[:2])
    assert_close(out.numpy(), rope(qs[1].numpy(), pos, ropekit.inv_freq(spec, n)))
    assert_close(grad.numpy(), rope(g.numpy(), pos, ropekit.inv_freq(spec, n), direction="backward"))
    if name == "dynamic_ntk":
        assert np.abs(ropekit.inv_freq(spec, n) - ropekit.inv_freq(spec)).max() > 1e-3
