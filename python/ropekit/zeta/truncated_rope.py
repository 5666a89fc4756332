"""Zeta's TruncatedRotaryEmbedding(dim, a, b, rho): forward(seq_len, device) returns angles (seq_len, dim)."""
from __future__ import annotations

import torch
from torch import nn

from .. import _C
from ._core import inv_freq_f32


class TruncatedRotaryEmbedding(nn.Module):
    """result[n, j] = n * beta_k * theta*_k, k = j mod dim/2 (half-split, columns repeated).

    beta_k = 10000^(-2k/dim); theta_k = 10000^(-4k/dim) (Zeta squares it); theta*_k = theta_k if
    theta_k >= b, rho if a <= theta_k < b, 0 below a. theta* is the core's truncated basis with
    base 10000^2 (whose theta_k is exactly 10000^(-4k/dim)); beta the core's default frequencies.
    """

    def __init__(self, dim: int, a: float, b: float, rho: float):
        super().__init__()
        self.dim = dim
        self.a = a
        self.b = b
        self.rho = rho
        self.base = 10000
        beta = inv_freq_f32(_C.RopeSpec(dim, base=float(self.base)))
        theta_star = inv_freq_f32(_C.RopeSpec(dim, base=float(self.base) ** 2, scaling=_C.Truncated(a, b, rho)))
        self.register_buffer("inv_freq", beta)
        self.register_buffer("theta_star", theta_star, persistent=False)

    def forward(self, seq_len: int, device=None) -> torch.Tensor:
        device = device if device is not None else self.inv_freq.device
        t = torch.arange(seq_len, device=device, dtype=torch.float32)
        freqs = torch.outer(t, self.inv_freq.to(device))
        freqs = torch.cat((freqs, freqs), dim=-1)
        theta_star = self.theta_star.to(device)
        return freqs * torch.cat((theta_star, theta_star), dim=-1)
