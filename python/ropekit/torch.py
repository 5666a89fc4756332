"""PyTorch front: autograd through the C++ kernels, a torch.library custom op, nn.Module wrappers.

The backward of the rotation is the core's Direction.backward kernel (the vector-Jacobian product
a*s*R(-theta)), not autograd of a Python formula.
"""
import itertools
import threading

import torch

from . import _C
from ._C import Direction, RopeSpec, RopeTable

__all__ = ["apply_rope", "RotaryEmbedding", "HAS_CUSTOM_OP", "rope_op"]


def _stream(x: torch.Tensor) -> int:
    return torch.cuda.current_stream(x.device).cuda_stream if x.is_cuda else 0


def _index(v, like: torch.Tensor, name: str):
    if v is None:
        return None
    if not isinstance(v, torch.Tensor):
        v = torch.as_tensor(v, dtype=torch.int64)
    if v.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{name}: expected dtype int32 or int64, got {v.dtype}")
    return v.to(like.device).contiguous()


def _last_contiguous(x):
    return x if x is None or x.numel() == 0 or x.stride(-1) == 1 else x.contiguous()


def _run(q, k, rope, start, offsets, ids, cu_seqlens, direction, xpos_center, compute_sincos):
    """Out of place: returns (q_out, k_out); q may be None when only k is rotated (k-side xPos).

    rope: a RopeTable (its frequencies, whatever the positions) or a RopeSpec (the frequencies for
    the largest position + 1, computed in the kernel)."""
    if q is None:
        # The core rotates q and k together; an empty q (no heads) lets k be rotated alone.
        q = k.new_empty(k.shape[:-2] + (0,) + k.shape[-1:])
    q_out = torch.empty_like(q)
    k_out = torch.empty_like(k) if k is not None else None
    table, spec = (rope, None) if isinstance(rope, RopeTable) else (None, rope)
    _C.apply(q.detach(), None if k is None else k.detach(), q_out, k_out, table=table, spec=spec, start=start,
             offsets=offsets,
             ids=ids, cu_seqlens=cu_seqlens, direction=direction, xpos_center=xpos_center,
             compute_sincos=compute_sincos, stream=_stream(q))
    return q_out, k_out


class RopeFunction(torch.autograd.Function):
    """q, k -> rotated q, k. backward applies Direction.backward to the incoming gradients."""

    @staticmethod
    def forward(ctx, q, k, rope, start, offsets, ids, cu_seqlens, xpos_center, compute_sincos, direction):
        q_out, k_out = _run(q, k, rope, start, offsets, ids, cu_seqlens, direction, xpos_center, compute_sincos)
        ctx.rope = rope  # immutable: backward uses exactly the forward's frequencies
        ctx.args = (start, xpos_center, compute_sincos)
        ctx.direction = direction
        ctx.has_q = q is not None
        ctx.has_k = k is not None
        ctx.save_for_backward(offsets, ids, cu_seqlens)
        return q_out, k_out

    @staticmethod
    def backward(ctx, grad_q, grad_k):
        if ctx.direction == Direction.inverse:
            raise RuntimeError("ropekit: the inverse direction has no backward kernel")
        offsets, ids, cu_seqlens = ctx.saved_tensors
        start, xpos_center, compute_sincos = ctx.args
        gq = _last_contiguous(grad_q) if ctx.has_q and ctx.needs_input_grad[0] else None
        gk = _last_contiguous(grad_k) if ctx.has_k and ctx.needs_input_grad[1] else None
        if gq is None and gk is None:
            return (None,) * 10
        # The transpose of a*s*R(t) is a*s*R(-t) and vice versa.
        back = Direction.backward if ctx.direction == Direction.forward else Direction.forward
        dq, dk = _run(gq, gk, ctx.rope, start, offsets, ids, cu_seqlens, back, xpos_center, compute_sincos)
        return (dq if gq is not None else None, dk) + (None,) * 8


def _rope(spec: RopeSpec | None, table: RopeTable | None):
    if (spec is None) == (table is None):
        raise ValueError("ropekit: give exactly one of spec= or table=")
    return table if table is not None else spec


def apply_rope(q: torch.Tensor | None, k: torch.Tensor | None = None, *, spec: RopeSpec | None = None,
               table: RopeTable | None = None, positions=None, offsets=None, cu_seqlens=None,
               xpos_center: float = 0.0, compute_sincos: bool = False, direction=Direction.forward):
    """Differentiable rotation of torch tensors (out of place). Returns q_out, or (q_out, k_out) with k.

    q may be None when only k is given (k-side xPos scaling). positions: int start or one id per token.
    """
    rope = _rope(spec, table)
    like = q if q is not None else k
    start, ids = 0, None
    if isinstance(positions, int):
        start = positions
    elif positions is not None:
        ids = _index(positions, like, "positions")
    offsets = _index(offsets, like, "offsets")
    cu_seqlens = _index(cu_seqlens, like, "cu_seqlens")
    if isinstance(direction, str):
        direction = getattr(Direction, direction)
    q_out, k_out = RopeFunction.apply(q, k, rope, start, offsets, ids, cu_seqlens, float(xpos_center),
                                      bool(compute_sincos), direction)
    if q is None:
        return k_out
    return q_out if k is None else (q_out, k_out)


def _required(q, positions, offsets, cu_seqlens) -> int:
    """The largest position + 1 of a call: the sequence length HF's dynamic rules see."""
    seq = q.shape[1] if q.dim() == 4 else q.shape[0]
    if seq == 0:
        return 0
    if cu_seqlens is not None:
        cu = torch.as_tensor(cu_seqlens).to(torch.int64).cpu()
        lengths = cu[1:] - cu[:-1]
        starts = torch.zeros_like(lengths) if offsets is None else torch.as_tensor(offsets).to(torch.int64).cpu()
        return int((starts + lengths).max()) if lengths.numel() else 0
    if offsets is not None:
        return int(torch.as_tensor(offsets).max()) + seq
    if positions is None or isinstance(positions, int):
        return int(positions or 0) + seq
    return int(torch.as_tensor(positions).max()) + 1


class RotaryEmbedding(torch.nn.Module):
    """Owns a cos/sin table for ``spec`` and rotates q and k: forward(q, k=None, positions=0, ...)."""

    def __init__(self, spec: RopeSpec, max_positions: int = 0, exact: bool = False):
        super().__init__()
        self.spec = spec
        self.table = RopeTable(spec, max_positions, exact=exact)

    def forward(self, q, k=None, positions=None, offsets=None, cu_seqlens=None, xpos_center: float = 0.0):
        table = self.table
        if _C.frequency_seq_len(self.spec, 1 << 62) != 0:
            # Dynamic NTK / LongRoPE: the frequencies follow this call's length, as HF's forward.
            seq_len = _required(q if q is not None else k, positions, offsets, cu_seqlens)
            if _C.frequency_seq_len(self.spec, seq_len) != table.seq_len:
                return apply_rope(q, k, spec=self.spec, positions=positions, offsets=offsets,
                                  cu_seqlens=cu_seqlens, xpos_center=xpos_center)
        return apply_rope(q, k, table=table, positions=positions, offsets=offsets, cu_seqlens=cu_seqlens,
                          xpos_center=xpos_center)

    def extra_repr(self) -> str:
        return self.spec.describe()


# --- torch.library custom op (torch >= 2.4): opaque to torch.compile, so no graph breaks -----------------

_TORCH_VERSION = tuple(int(p) for p in itertools.islice((s for s in torch.__version__.split("+")[0].split(".")), 2)
                       if p.isdigit())
HAS_CUSTOM_OP = _TORCH_VERSION >= (2, 4) and hasattr(torch, "library") and hasattr(torch.library, "custom_op")

# Tables are C++ objects; the op refers to them by an integer handle.
_tables: dict[int, RopeTable] = {}
_tables_lock = threading.Lock()
_next_handle = itertools.count(1)


def register_table(table: RopeTable) -> int:
    with _tables_lock:
        handle = next(_next_handle)
        _tables[handle] = table
    return handle


if HAS_CUSTOM_OP:

    @torch.library.custom_op("ropekit::rope", mutates_args=())
    def _rope_op(q: torch.Tensor, k: torch.Tensor, table: int, start: int, xpos_center: float,
                 backward: bool) -> tuple[torch.Tensor, torch.Tensor]:
        q_out, k_out = _run(q, k, _tables[table], start, None, None, None,
                            Direction.backward if backward else Direction.forward, xpos_center, False)
        return q_out, k_out

    @_rope_op.register_fake
    def _(q, k, table, start, xpos_center, backward):
        return torch.empty_like(q), torch.empty_like(k)

    def _setup(ctx, inputs, output):
        ctx.args = inputs[2:]

    def _backward(ctx, gq, gk):
        table, start, xpos_center, backward = ctx.args
        dq, dk = _rope_op(gq.contiguous(), gk.contiguous(), table, start, xpos_center, not backward)
        return dq, dk, None, None, None, None

    _rope_op.register_autograd(_backward, setup_context=_setup)

    def rope_op(q, k, table_handle: int, start: int = 0, xpos_center: float = 0.0):
        """Custom-op form (positions from an offset): traceable by torch.compile(fullgraph=True)."""
        return _rope_op(q, k, table_handle, start, xpos_center, False)
else:

    def rope_op(q, k, table_handle: int, start: int = 0, xpos_center: float = 0.0):
        raise RuntimeError(f"ropekit.torch.rope_op needs torch >= 2.4 (torch.library.custom_op); this is torch {torch.__version__}")
