"""Shared helpers of the Zeta modules: every frequency, table and rotation comes from the C++ core."""
from __future__ import annotations

import torch

from .. import _C


def inv_freq_f32(spec: _C.RopeSpec, seq_len: int = 0) -> torch.Tensor:
    """The core's inverse frequencies rounded to float32, as upstream keeps them in its buffers."""
    return torch.from_numpy(_C.inv_freq(spec, seq_len)).to(torch.float32)


def cos_sin(spec: _C.RopeSpec, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows [0, rows) of the core's fp32 table (attention factor folded in): cos, sin of (rows, pairs)."""
    table = _C.RopeTable(spec, rows)
    t = torch.from_numpy(table.table(rows))
    pairs = spec.pairs
    return t[:, :pairs], t[:, pairs:]


def xpos_zeta_f32(dim: int, gamma: float = 0.4) -> torch.Tensor:
    """xPos per-pair base zeta_i = (2i + gamma*dim) / ((1 + gamma)*dim), from the core, as float32."""
    spec = _C.RopeSpec(dim, xpos=_C.Xpos(512.0, gamma))
    return torch.from_numpy(_C.xpos_zeta(spec)).to(torch.float32)


_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# Dtypes whose result the upstream formula keeps with float32 tables: float32, and float64 (the core
# computes it in double with the float32 coefficients, as x * cos(freqs) promotes float32 tables).
_TABLE_DTYPES = (torch.float32, torch.float64)


def core_ok(x, *tables, dtypes=_TABLE_DTYPES) -> bool:
    """Whether the core's explicit-table kernel computes what the upstream formula would: CPU
    tensors, x of a kernel dtype whose result dtype the formula keeps, fp32 tables that need no
    gradient. Otherwise callers use the upstream formula in torch ops (CUDA, float64 tables,
    autograd into the tables)."""
    if not isinstance(x, torch.Tensor) or x.device.type != "cpu" or x.dtype not in dtypes or x.dim() < 2:
        return False
    for t in tables:
        if isinstance(t, torch.Tensor):
            if t.device.type != "cpu" or t.dtype not in (torch.float32, torch.complex64) or t.requires_grad:
                return False
        elif not isinstance(t, (int, float)):
            return False
    return True


_TRANSPOSED = {_C.Direction.forward: _C.Direction.backward, _C.Direction.backward: _C.Direction.forward}


class _ExplicitRotation(torch.autograd.Function):
    """x (..., L, D) rotated with per-(row, element) tables (L, width) by the core. The backward is
    the transposed rotation through this function again, so it is differentiable too."""

    @staticmethod
    def forward(ctx, x, cos, sin, style, bshd, direction=_C.Direction.forward):
        rows = x.detach() if bshd else x.detach().reshape(-1, x.shape[-2], 1, x.shape[-1])
        if rows.numel() and rows.stride(-1) != 1:
            rows = rows.contiguous()  # transposed or strided input: the kernel reads a contiguous last axis
        out = torch.empty(rows.shape, dtype=rows.dtype, device=rows.device)
        _C.apply_explicit(rows, cos, sin, out, style=style, direction=direction)
        ctx.save_for_backward(cos, sin)
        ctx.style = style
        ctx.bshd = bshd
        ctx.direction = direction
        return out.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        cos, sin = ctx.saved_tensors
        back = _ExplicitRotation.apply(grad, cos, sin, ctx.style, ctx.bshd, _TRANSPOSED[ctx.direction])
        return back, None, None, None, None, None


def rotate_with_tables(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, style: str,
                       bshd: bool = False) -> torch.Tensor:
    """The core's rotation with caller tables cos/sin broadcast to (L, D): L = x.shape[-2], or
    x.shape[1] when bshd (x is (B, S, H, D))."""
    shape = (x.shape[1] if bshd else x.shape[-2], x.shape[-1])
    cos = torch.broadcast_to(cos, shape).to(torch.float32).contiguous()
    sin = torch.broadcast_to(sin, shape).to(torch.float32).contiguous()
    return _ExplicitRotation.apply(x, cos, sin, style, bshd)


def table_shape_ok(x: torch.Tensor, *tables) -> bool:
    """Tables broadcast to x's (L, D) without broadcasting x itself."""
    try:
        shapes = [tuple(t.shape) for t in tables if isinstance(t, torch.Tensor)]
        return all(len(s) <= 2 for s in shapes) and torch.broadcast_shapes(
            (x.shape[-2], x.shape[-1]), *shapes) == (x.shape[-2], x.shape[-1])
    except RuntimeError:
        return False
