"""Context parallelism: the load-balanced split, and a 2-process gloo run whose sharded forward and
backward equal the single-process ones."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import ropekit
import ropekit.torch as rt
from ropekit.distributed import context_parallel_shard


def test_split_covers_every_token_once_at_its_position():
    cu = [0, 8, 12, 12, 28]
    offsets = [5, 0, 3, 100]
    for cp in (1, 2):
        seen = []
        for rank in range(cp):
            s = context_parallel_shard(cu, cp, rank, offsets)
            assert s.index.numel() == s.positions.numel() == int(s.cu_seqlens[-1])
            seen += s.index.tolist()
            for t, p in zip(s.index.tolist(), s.positions.tolist()):
                b = max(i for i in range(4) if cu[i] <= t and cu[i + 1] > t)
                assert p == offsets[b] + t - cu[b]
        assert sorted(seen) == list(range(28))
    s = context_parallel_shard(cu, 2, 0)
    # sequence 0 (8 tokens, chunks of 2): rank 0 keeps chunks 0 and 3
    assert s.index[:4].tolist() == [0, 1, 6, 7] and s.positions[:4].tolist() == [0, 1, 6, 7]
    assert s.cu_seqlens.tolist() == [0, 4, 6, 6, 14]


def test_split_refuses_bad_arguments():
    with pytest.raises(ValueError, match=r"sequence 1 has 6 tokens; expected a multiple of 2 \* cp_size \(4\)"):
        context_parallel_shard([0, 8, 14], 2, 0)
    with pytest.raises(ValueError, match=r"cp_rank: expected in \[0, 2\), got 2"):
        context_parallel_shard([0, 8], 2, 2)
    with pytest.raises(ValueError, match=r"cu_seqlens\[2\]: expected >= cu_seqlens\[1\]"):
        context_parallel_shard([0, 8, 4], 1, 0)
    with pytest.raises(ValueError, match="offsets: expected 1 entries"):
        context_parallel_shard([0, 8], 1, 0, offsets=[1, 2])
    with pytest.raises(TypeError, match="cu_seqlens: expected an integer array"):
        context_parallel_shard([0.0, 8.0], 1, 0)


def _rotate(q, k, positions):
    spec = ropekit.RopeSpec(64, base=10000.0, scaling=ropekit.Yarn(4.0, original_max=32))
    return rt.apply_rope(q, k, table=ropekit.RopeTable(spec, 64), positions=positions)


def _rank(rank, world, init_file, data, out_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        shard = context_parallel_shard(data["cu"], world, rank, data["offsets"])
        q = shard.take(data["q"]).requires_grad_()
        k = shard.take(data["k"]).requires_grad_()
        q_rot, k_rot = _rotate(q, k, shard.positions)  # positions past the 64 rows: computed in the kernel
        loss = (q_rot * shard.take(data["wq"])).sum() + (k_rot * shard.take(data["wk"])).sum()
        loss.backward()
        total = loss.detach().clone()
        dist.all_reduce(total)
        parts = [None] * world
        dist.all_gather_object(parts, (shard.index, q_rot.detach(), k_rot.detach(), q.grad, k.grad))
        if rank == 0:
            torch.save({"loss": total, "parts": parts}, out_file)
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_equal_one_process(tmp_path):
    g = torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "little"))
    cu = torch.tensor([0, 16, 24, 56])
    offsets = torch.tensor([0, 40, 7])
    T = int(cu[-1])
    data = {"cu": cu, "offsets": offsets, "q": torch.randn(T, 4, 64, generator=g), "k": torch.randn(T, 2, 64, generator=g),
            "wq": torch.randn(T, 4, 64, generator=g), "wk": torch.randn(T, 2, 64, generator=g)}
    out_file = str(tmp_path / "result.pt")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_rank, args=(r, 2, str(tmp_path / "init"), data, out_file)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    result = torch.load(out_file)

    # One process, every token, the same positions.
    positions = torch.cat([offsets[b] + torch.arange(int(cu[b + 1] - cu[b])) for b in range(3)])
    q = data["q"].clone().requires_grad_()
    k = data["k"].clone().requires_grad_()
    q_rot, k_rot = _rotate(q, k, positions)
    loss = (q_rot * data["wq"]).sum() + (k_rot * data["wk"]).sum()
    loss.backward()

    torch.testing.assert_close(result["loss"], loss.detach(), rtol=1e-5, atol=1e-4)
    covered = torch.cat([part[0] for part in result["parts"]])
    assert sorted(covered.tolist()) == list(range(T))
    for index, qr, kr, gq, gk in result["parts"]:
        assert torch.equal(qr, q_rot.detach()[index]) and torch.equal(kr, k_rot.detach()[index])
        assert torch.equal(gq, q.grad[index]) and torch.equal(gk, k.grad[index])
