"""Context parallelism: which tokens each rank holds and at which positions they sit.

The split is TransformerEngine's load-balanced one for packed (THD) sequences: every sequence is
cut into 2 * cp_size equal chunks and rank r keeps chunks r and 2 * cp_size - 1 - r, so that with
causal attention each rank gets the same amount of work. A rank rotates its shard with the global
positions of its tokens (``positions=shard.positions``) and gets exactly the rows of the
unsharded rotation; the rotation needs no communication.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ContextParallelShard", "context_parallel_shard"]


@dataclass(frozen=True)
class ContextParallelShard:
    index: torch.Tensor       # int64 [T_local]: the rank's tokens, as indices into the packed tokens
    positions: torch.Tensor   # int64 [T_local]: their positions (offsets[b] + index within sequence b)
    cu_seqlens: torch.Tensor  # int64 [B + 1]: the sequences' boundaries within the shard

    def take(self, x: torch.Tensor) -> torch.Tensor:
        """The rank's rows of a packed (T, ...) tensor, in shard order."""
        return x.index_select(0, self.index.to(x.device))


def _integers(v, name: str) -> torch.Tensor:
    t = torch.as_tensor(v)
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise TypeError(f"{name}: expected an integer array, got dtype {t.dtype}")
    if t.dim() != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {tuple(t.shape)}")
    return t.to(torch.int64).cpu()


def context_parallel_shard(cu_seqlens, cp_size: int, cp_rank: int, offsets=None) -> ContextParallelShard:
    """Rank ``cp_rank``'s share of packed sequences (boundaries ``cu_seqlens``, optional start
    ``offsets`` per sequence, e.g. cached tokens). Every sequence length must be a multiple of
    2 * cp_size (as TransformerEngine requires)."""
    for name, v in (("cp_size", cp_size), ("cp_rank", cp_rank)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name}: expected an int, got {type(v).__name__}")
    if cp_size < 1:
        raise ValueError(f"cp_size: expected >= 1, got {cp_size}")
    if not 0 <= cp_rank < cp_size:
        raise ValueError(f"cp_rank: expected in [0, {cp_size}), got {cp_rank}")
    cu = _integers(cu_seqlens, "cu_seqlens")
    if cu.numel() < 2 or int(cu[0]) != 0:
        raise ValueError(f"cu_seqlens: expected 0 first and at least 2 entries, got {cu.tolist()[:8]}")
    lengths = cu[1:] - cu[:-1]
    if bool((lengths < 0).any()):
        b = int(torch.nonzero(lengths < 0)[0])
        raise ValueError(f"cu_seqlens[{b + 1}]: expected >= cu_seqlens[{b}] ({int(cu[b])}), got {int(cu[b + 1])}")
    starts = torch.zeros_like(lengths) if offsets is None else _integers(offsets, "offsets")
    if starts.numel() != lengths.numel():
        raise ValueError(f"offsets: expected {lengths.numel()} entries (one per sequence), got {starts.numel()}")
    if bool((starts < 0).any()):
        raise ValueError(f"offsets[{int(torch.nonzero(starts < 0)[0])}]: expected >= 0")
    chunks = 2 * cp_size
    bad = torch.nonzero(lengths % chunks != 0)
    if bad.numel():
        b = int(bad[0])
        raise ValueError(f"cu_seqlens: sequence {b} has {int(lengths[b])} tokens; expected a multiple of "
                         f"2 * cp_size ({chunks}) for the load-balanced split")
    chunk = lengths // chunks
    index, positions = [], []
    for b in range(lengths.numel()):
        c = int(chunk[b])
        for j in (cp_rank, chunks - 1 - cp_rank):
            local = torch.arange(j * c, (j + 1) * c, dtype=torch.int64)
            index.append(int(cu[b]) + local)
            positions.append(int(starts[b]) + local)
    empty = torch.zeros(0, dtype=torch.int64)
    local_cu = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(2 * chunk, 0)])
    return ContextParallelShard(torch.cat(index) if index else empty, torch.cat(positions) if positions else empty,
                                local_cu)
