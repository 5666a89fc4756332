"""Zeta's XPOS module (torchscale xPos): XPOS, fixed_pos_embedding, rotate_every_two,
duplicate_interleave and the xPos-style apply_rotary_pos_emb(x, sin, cos, scale=1)."""
from __future__ import annotations

import torch
from torch import nn

from .. import _C, _args
from .. import torch as rk_torch
from ._core import core_ok, cos_sin, rotate_with_tables, table_shape_ok, xpos_zeta_f32


def fixed_pos_embedding(x: torch.Tensor):
    """Uses only x.shape (N, m): angle[n, j] = n / 10000^(j/m). Returns (sin, cos), each (N, m), like x."""
    seq_len, dim = x.shape
    # 10000^(-j/m) = the core's default frequencies for a head of 2m.
    cos, sin = cos_sin(_C.RopeSpec(2 * dim, style="interleaved"), seq_len)
    return sin.to(x), cos.to(x)


def rotate_every_two(x: torch.Tensor) -> torch.Tensor:
    """out[2i] = -x[2i+1], out[2i+1] = x[2i] (pairs (2i, 2i+1) turned by 90 degrees)."""
    x1 = x[..., ::2]
    x2 = x[..., 1::2]
    return torch.stack((-x2, x1), dim=-1).flatten(-2)


def duplicate_interleave(m: torch.Tensor) -> torch.Tensor:
    """(N, m) -> (N, 2m) as [c0, c0, c1, c1, ...]."""
    dim0 = m.shape[0]
    return m.reshape(-1, 1).repeat(1, 2).reshape(dim0, -1)


def apply_rotary_pos_emb(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor, scale=1):
    """x * dup(cos * scale) + rotate_every_two(x) * dup(sin * scale); sin/cos (L, D/2), x (..., L, D)."""
    sin, cos = (duplicate_interleave(t * scale) for t in (sin, cos))
    if core_ok(x, sin, cos) and table_shape_ok(x, sin, cos):
        return rotate_with_tables(x, cos, sin, "interleaved")  # the core's explicit-table rotation
    return (x * cos) + (rotate_every_two(x) * sin)


class XPOS(nn.Module):
    """forward(x, offset=0, downscale=False): x (B*H, L, D) or (..., L, D); row j at position offset + j.

    The core's interleaved rotation with base 10000 and xPos(scale_base, gamma 0.4), centred on
    ceil((L + offset) / 2); downscale uses the k-side exponent (zeta^-e).
    """

    def __init__(self, head_dim: int, scale_base: int = 512):
        super().__init__()
        self.head_dim = head_dim
        self.scale_base = scale_base
        self.register_buffer("scale", xpos_zeta_f32(head_dim))
        self.spec = _C.RopeSpec(head_dim, style="interleaved", xpos=_C.Xpos(float(scale_base), 0.4))
        self.table = _C.RopeTable(self.spec)

    def forward(self, x: torch.Tensor, offset: int = 0, downscale: bool = False) -> torch.Tensor:
        if x.dim() < 3:
            raise ValueError(f"XPOS: x: expected rank 3 (batch*heads, seq, head_dim) or more, got shape {tuple(x.shape)}")
        start = _args.scalar(offset, "offset")  # an integer: a float offset is a TypeError, not truncated
        if start is None:
            raise TypeError(f"offset: expected an int, got {_args.describe(offset)}")
        if x.dtype == torch.float64 and x.device.type != "cpu":
            return self._upstream(x, start, downscale)  # the core's float64 kernel runs on the CPU only
        length = x.shape[-2]
        rows = x.reshape(-1, length, 1, x.shape[-1]) if x.dim() != 3 else x.unsqueeze(2)
        center = float(-((-(length + start)) // 2))  # ceil((L + offset) / 2)
        if downscale:
            out = rk_torch.apply_rope(None, rows, table=self.table, positions=start, xpos_center=center)
        else:
            out = rk_torch.apply_rope(rows, table=self.table, positions=start, xpos_center=center)
        return out.reshape(x.shape)

    def _upstream(self, x: torch.Tensor, offset: int, downscale: bool) -> torch.Tensor:
        """torchscale's formula in torch ops (float32 tables and scale, x's arithmetic)."""
        length = x.shape[-2]
        min_pos = -(length + offset) // 2
        power = torch.arange(min_pos, length + offset + min_pos, device=x.device).to(torch.float32) / self.scale_base
        scale = self.scale.to(x.device) ** power[:, None]
        sin, cos = fixed_pos_embedding(scale)
        scale, sin, cos = scale[-length:], sin[-length:], cos[-length:]
        if downscale:
            scale = 1 / scale
        return apply_rotary_pos_emb(x, sin, cos, scale)
