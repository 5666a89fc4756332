"""Zeta's SinusoidalEmbeddings, rotate_half and apply_rotary_pos_emb(q, k, freqs, scale=1)."""
from __future__ import annotations

import torch
from torch import nn

from .. import _C
from ._core import core_ok, inv_freq_f32, rotate_with_tables, table_shape_ok, xpos_zeta_f32


class SinusoidalEmbeddings(nn.Module):
    """forward(x) -> (freqs, scale) with L = x.shape[-2].

    freqs = cat(t x inv, t x inv) (L, dim); scale = ones(1) without xPos, else cat(z^p, z^p) (L, dim)
    with z the core's xPos bases (gamma 0.4) and p_n = (n - L//2) / scale_base.
    """

    def __init__(self, dim: int, scale_base=None, use_xpos: bool = False):
        super().__init__()
        if use_xpos and scale_base is None:
            raise ValueError("SinusoidalEmbeddings: scale_base must be given when use_xpos=True")
        self.dim = dim
        self.use_xpos = use_xpos
        self.scale_base = scale_base
        self.register_buffer("inv_freq", inv_freq_f32(_C.RopeSpec(dim)))
        self.register_buffer("scale", xpos_zeta_f32(dim), persistent=False)

    def forward(self, x: torch.Tensor):
        seq_len, device = x.shape[-2], x.device
        t = torch.arange(seq_len, device=device, dtype=torch.float32)
        freqs = torch.outer(t, self.inv_freq.to(device))
        freqs = torch.cat((freqs, freqs), dim=-1)
        if not self.use_xpos:
            return freqs, torch.ones(1, device=device)
        power = (t - (seq_len // 2)) / self.scale_base
        scale = self.scale.to(device) ** power[:, None]
        return freqs, torch.cat((scale, scale), dim=-1)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """Turns each pair (i, i + d/2) by 90 degrees: [x0..x7] -> [-x4, -x5, -x6, -x7, x0, x1, x2, x3]."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q: torch.Tensor, k: torch.Tensor, freqs: torch.Tensor, scale=1):
    """q uses the last q_len rows of freqs and scale; k all rows with 1/scale. scale may be a number."""
    q_len = q.shape[-2]
    q_freqs = freqs[..., -q_len:, :]
    if isinstance(scale, torch.Tensor):
        inv_scale = scale ** -1
        q_scale = scale[-q_len:, :] if scale.ndim == 2 else scale
    else:
        inv_scale = 1.0 / scale
        q_scale = scale
    return rotate_half_style(q, q_freqs, q_scale), rotate_half_style(k, freqs, inv_scale)


def rotate_half_style(x: torch.Tensor, freqs: torch.Tensor, scale=1) -> torch.Tensor:
    """x * cos(freqs) * scale + rotate_half(x) * sin(freqs) * scale: the core's explicit-table rotation
    when it computes the same thing (CPU, float32, tables without gradient), else these torch ops."""
    if core_ok(x, freqs, scale) and table_shape_ok(x, freqs, scale):
        return rotate_with_tables(x, freqs.cos() * scale, freqs.sin() * scale, "half")
    return (x * freqs.cos() * scale) + (rotate_half(x) * freqs.sin() * scale)
