"""LLaMA's complex-form RoPE: precompute_freqs_cis, reshape_for_broadcast, apply_rotary_emb."""
from __future__ import annotations

from typing import Tuple

import torch

from .. import _C
from ._core import _KERNEL_DTYPES, core_ok, cos_sin, rotate_with_tables


def precompute_freqs_cis(dim: int, end: int, theta: float = 10000.0) -> torch.Tensor:
    """complex64 (end, dim/2): e^(i n theta^(-2k/dim)), from the core's cos/sin table."""
    cos, sin = cos_sin(_C.RopeSpec(dim, base=float(theta), style="interleaved"), end)
    return torch.complex(cos, sin)


def reshape_for_broadcast(freqs_cis: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Views (S, D/2) as (1, S, 1, ..., D/2) to broadcast against x (B, S, H, D/2)."""
    ndim = x.ndim
    if ndim < 2 or tuple(freqs_cis.shape) != (x.shape[1], x.shape[-1]):
        raise ValueError(f"reshape_for_broadcast: freqs_cis: expected shape {(x.shape[1], x.shape[-1])}, "
                         f"got {tuple(freqs_cis.shape)}")
    shape = [d if i == 1 or i == ndim - 1 else 1 for i, d in enumerate(x.shape)]
    return freqs_cis.view(*shape)


def apply_rotary_emb(xq: torch.Tensor, xk: torch.Tensor, freqs_cis: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """xq, xk (B, S, H, D), freqs_cis (S, D/2): complex multiply of pairs (2i, 2i+1), fp32 math, cast back."""
    if (xq.dim() == 4 and xk.dim() == 4 and xk.dtype == xq.dtype and freqs_cis.dtype == torch.complex64
            and core_ok(xq, freqs_cis, dtypes=_KERNEL_DTYPES) and core_ok(xk, dtypes=_KERNEL_DTYPES)):
        reshape_for_broadcast(freqs_cis, xq[..., ::2])  # the shape check
        # The core computes in fp32 and rounds once to x's dtype, as .float() ... .type_as(x) does.
        cos = freqs_cis.real.repeat_interleave(2, dim=-1)
        sin = freqs_cis.imag.repeat_interleave(2, dim=-1)
        return (rotate_with_tables(xq, cos, sin, "interleaved", bshd=True),
                rotate_with_tables(xk, cos, sin, "interleaved", bshd=True))
    xq_ = torch.view_as_complex(xq.float().reshape(*xq.shape[:-1], -1, 2))
    xk_ = torch.view_as_complex(xk.float().reshape(*xk.shape[:-1], -1, 2))
    freqs_cis = reshape_for_broadcast(freqs_cis, xq_)
    xq_out = torch.view_as_real(xq_ * freqs_cis).flatten(3)
    xk_out = torch.view_as_real(xk_ * freqs_cis).flatten(3)
    return xq_out.type_as(xq), xk_out.type_as(xk)
