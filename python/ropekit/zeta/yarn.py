"""Zeta's YarnEmbedding (jquesnelle's dynamic YaRN) and the YaRN helpers, all from the C++ core."""
from __future__ import annotations

import torch
from torch import nn

from .. import _C
from ._core import cos_sin, inv_freq_f32


def find_correction_dim(num_rotations, dim, base=10000, max_position_embeddings=2048) -> float:
    """dim * ln(max_position_embeddings / (2 pi num_rotations)) / (2 ln base)."""
    return _C.find_correction_dim(float(num_rotations), float(dim), float(base), float(max_position_embeddings))


def find_correction_range(low_rot, high_rot, dim, base=10000, max_position_embeddings=2048):
    """(max(floor(low), 0), min(ceil(high), dim - 1)) as ints."""
    low, high = _C.find_correction_range(float(low_rot), float(high_rot), float(dim), float(base),
                                         float(max_position_embeddings))
    return int(low), int(high)


def linear_ramp_mask(min, max, dim) -> torch.Tensor:  # noqa: A002  (Zeta's argument names)
    """clamp((i - min) / (max - min), 0, 1) for i in [0, dim) (max += 0.001 when equal), float32."""
    return torch.from_numpy(_C.linear_ramp_mask(float(min), float(max), int(dim))).to(torch.float32)


def get_mscale(scale=1) -> float:
    """1 if scale <= 1 else 0.1 ln(scale) + 1."""
    return _C.get_mscale(float(scale))


class YarnEmbedding(nn.Module):
    """forward(x, seq_len=None) -> (cos, sin), each (1, 1, seq_len, dim) in x's dtype, mscale folded in.

    Without finetuned the table starts unscaled (mscale 1); past max_position_embeddings it is rebuilt
    with YaRN for factor seq_len / original_max_position_embeddings and never shrinks (upstream).
    """

    def __init__(self, dim, max_position_embeddings=2048, base=10000, original_max_position_embeddings=2048,
                 extrapolation_factor=1, attn_factor=1, beta_fast=32, beta_slow=1, finetuned=False, device=None):
        super().__init__()
        self.dim = dim
        self.max_position_embeddings = max_position_embeddings
        self.base = base
        self.original_max_position_embeddings = original_max_position_embeddings
        self.extrapolation_factor = extrapolation_factor
        self.attn_factor = attn_factor
        self.beta_fast = beta_fast
        self.beta_slow = beta_slow
        self.finetuned = finetuned
        if finetuned:
            self.spec = self._yarn_spec(max_position_embeddings / original_max_position_embeddings)
        else:
            self.spec = _C.RopeSpec(dim, base=float(base))
        self.register_buffer("inv_freq", inv_freq_f32(self.spec).to(device))
        self.mscale = float(_C.attention_factor(self.spec))
        self.max_seq_len_cached = max_position_embeddings
        self._build(max_position_embeddings, device, torch.get_default_dtype())

    def _yarn_spec(self, scale: float) -> _C.RopeSpec:
        return _C.RopeSpec(self.dim, base=float(self.base), scaling=_C.Yarn(
            float(scale), original_max=int(self.original_max_position_embeddings), beta_fast=float(self.beta_fast),
            beta_slow=float(self.beta_slow), extrapolation_factor=float(self.extrapolation_factor),
            attention_multiplier=float(self.attn_factor)))

    def yarn(self, scale, device=None):
        """Switch to YaRN frequencies and mscale for `scale` (upstream's method)."""
        self.spec = self._yarn_spec(scale)
        self.register_buffer("inv_freq", inv_freq_f32(self.spec).to(device if device is not None else self.inv_freq.device))
        self.mscale = float(_C.attention_factor(self.spec))

    def _build(self, rows: int, device, dtype):
        cos, sin = cos_sin(self.spec, rows)  # the core's table: attention factor (mscale) included
        emb_cos = torch.cat((cos, cos), dim=-1)[None, None, :, :]
        emb_sin = torch.cat((sin, sin), dim=-1)[None, None, :, :]
        self.register_buffer("cos_cached", emb_cos.to(device=device, dtype=dtype), persistent=False)
        self.register_buffer("sin_cached", emb_sin.to(device=device, dtype=dtype), persistent=False)

    def forward(self, x: torch.Tensor, seq_len=None):
        if seq_len is None:
            seq_len = x.shape[-2]
        if seq_len > self.max_seq_len_cached:
            self.max_seq_len_cached = seq_len
            self.yarn(seq_len / self.original_max_position_embeddings, x.device)
            self._build(seq_len, x.device, x.dtype)
        return (self.cos_cached[:, :, :seq_len, ...].to(device=x.device, dtype=x.dtype),
                self.sin_cached[:, :, :seq_len, ...].to(device=x.device, dtype=x.dtype))
