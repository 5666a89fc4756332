"""Zeta's RotaryEmbedding(dim, use_xpos, scale_base, interpolation_factor, base, base_rescale_factor)."""
from __future__ import annotations

import torch
from torch import nn

from .. import _C
from ._core import inv_freq_f32, xpos_zeta_f32
from .sinusoidal import rotate_half, rotate_half_style  # noqa: F401


class RotaryEmbedding(nn.Module):
    """forward(seq_len, device) -> (freqs (seq_len, dim), scale): scale is 1.0 without xPos, else (seq_len, dim).

    NTK-aware base (base * base_rescale_factor^(dim/(dim-2))) from the core; positions are divided by
    interpolation_factor; xPos scale zeta^((n - seq_len//2)/scale_base) with the core's bases.
    """

    def __init__(self, dim, use_xpos=False, scale_base=512, interpolation_factor=1.0, base=10000,
                 base_rescale_factor=1.0):
        super().__init__()
        if interpolation_factor < 1.0:
            raise ValueError(f"RotaryEmbedding: interpolation_factor: expected >= 1, got {interpolation_factor}")
        self.dim = dim
        self.spec = _C.RopeSpec(dim, base=float(base), scaling=_C.NtkAware(float(base_rescale_factor)))
        self.register_buffer("inv_freq", inv_freq_f32(self.spec))
        self.interpolation_factor = interpolation_factor
        self.use_xpos = use_xpos
        self.scale_base = scale_base
        if use_xpos:
            self.register_buffer("scale", xpos_zeta_f32(dim))
        else:
            self.register_buffer("scale", None)

    def forward(self, seq_len: int, device=None):
        device = device if device is not None else self.inv_freq.device
        t = torch.arange(seq_len, device=device, dtype=torch.float32) / self.interpolation_factor
        freqs = torch.outer(t, self.inv_freq.to(device))
        freqs = torch.cat((freqs, freqs), dim=-1)
        if self.scale is None:
            return freqs, 1.0
        power = (torch.arange(seq_len, device=device) - (seq_len // 2)) / self.scale_base
        scale = self.scale.to(device) ** power[:, None]
        return freqs, torch.cat((scale, scale), dim=-1)


def apply_rotary_pos_emb(t: torch.Tensor, freqs: torch.Tensor, scale=1):
    """t * cos(freqs) * scale + rotate_half(t) * sin(freqs) * scale with the last t.shape[-2] rows of freqs."""
    seq_len = t.shape[-2]
    freqs = freqs[-seq_len:, :]
    if isinstance(scale, torch.Tensor) and scale.ndim == 2:
        scale = scale[-seq_len:, :]
    return rotate_half_style(t, freqs, scale)
