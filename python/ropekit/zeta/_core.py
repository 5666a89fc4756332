"""Shared helpers of the Zeta modules: every frequency, table and rotation comes from the C++ core."""
from __future__ import annotations

import torch

from .. import _C


def inv_freq_f32(spec: _C.RopeSpec, seq_len: int = 0) -> torch.Tensor:
    """The core's inverse frequencies rounded to float32, as upstream keeps them in its buffers."""
    return torch.from_numpy(_C.inv_freq(spec, seq_len)).to(torch.float32)


def cos_sin(spec: _C.RopeSpec, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows [0, rows) of the core's fp32 table (attention factor folded in): cos, sin of (rows, pairs)."""
    table = _C.CosSinCache(spec, rows)
    t = torch.from_numpy(table.table(rows))
    pairs = spec.pairs
    return t[:, :pairs], t[:, pairs:]


def xpos_zeta_f32(dim: int, gamma: float = 0.4) -> torch.Tensor:
    """xPos per-pair base zeta_i = (2i + gamma*dim) / ((1 + gamma)*dim), from the core, as float32."""
    spec = _C.RopeSpec(dim, xpos=_C.Xpos(512.0, gamma))
    return torch.from_numpy(_C.xpos_zeta(spec)).to(torch.float32)
