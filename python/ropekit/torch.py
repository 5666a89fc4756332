"""PyTorch front: autograd through the C++ kernels, a torch.library custom op, nn.Module wrappers.

The backward of the rotation is the core's Direction.backward kernel (the vector-Jacobian product
a*s*R(-theta)), not autograd of a Python formula. That backward is itself a rotation applied through
the same autograd function, so higher derivatives (double backward, Hessian-vector products) work.
Under torch.compile the calls go through the custom op ropekit::rope, which dynamo does not trace
into (fullgraph=True works).

The ops are native (ropekit/_torch_ops.so, TORCH_LIBRARY: C++ autograd, Meta kernels) where the
package was built with torch; otherwise, or with ROPEKIT_TORCH_OPS=0 in the environment, the same
ops are Python custom ops (torch.library.custom_op, autograd.Function), slower per call.
"""
import itertools
import os
import threading
import warnings
import weakref

import torch

from . import _C, _args
from ._C import Direction, RopeSpec, RopeTable

__all__ = ["apply_rope", "RotaryEmbedding", "HAS_CUSTOM_OP", "NATIVE_OPS", "rope_op", "register_table",
           "rotary_embedding"]

HAS_CUSTOM_OP = True  # torch.library.custom_op: every supported torch has it


def _load_native_ops() -> bool:
    """Load ropekit/_torch_ops.so when it exists and was built for this torch; False: Python ops."""
    if os.environ.get("ROPEKIT_TORCH_OPS", "1") == "0":
        return False
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_torch_ops.so")
    if not os.path.exists(path):
        return False
    try:
        from ._torch_ops_build import TORCH_VERSION
    except ImportError:
        return False
    if TORCH_VERSION != torch.__version__:
        warnings.warn(f"ropekit: _torch_ops.so was built for torch {TORCH_VERSION}, not {torch.__version__}; "
                      f"using the slower Python custom ops (reinstall ropekit to rebuild it)", RuntimeWarning)
        return False
    try:
        torch.ops.load_library(path)
    except (OSError, RuntimeError) as e:
        warnings.warn(f"ropekit: cannot load {path} ({e}); using the slower Python custom ops", RuntimeWarning)
        return False
    return True


NATIVE_OPS = _load_native_ops()
if NATIVE_OPS:
    _native_rope = torch.ops.ropekit.rope.default
    _native_rope_ = torch.ops.ropekit.rope_.default
    _native_rotary = torch.ops.ropekit.rotary_embedding.default

_DIRECTIONS = (Direction.forward, Direction.backward, Direction.inverse)
_DIRECTION_INDEX = {d: i for i, d in enumerate(_DIRECTIONS)}
_INDEX_DTYPES = (torch.int32, torch.int64)
_START_LIMIT = 1 << 63
# The transpose of a*s*R(t) is a*s*R(-t) and vice versa; inverse has no backward kernel.
_TRANSPOSED = {Direction.forward: Direction.backward, Direction.backward: Direction.forward}


def _stream(x: torch.Tensor) -> int:
    return torch.cuda.current_stream(x.device).cuda_stream if x.is_cuda else 0


def _check_dtype(v: torch.Tensor, name: str) -> None:
    if v.dtype == torch.bool or v.dtype.is_floating_point or v.dtype.is_complex:
        raise TypeError(f"{name}: expected an int or an integer array (int32 or int64), got dtype {v.dtype}")


def _as_tensor(v, name: str) -> torch.Tensor:
    """A list or array of positions as an integer tensor (torch ops, so dynamo can trace it)."""
    if not isinstance(v, torch.Tensor):
        try:
            v = torch.as_tensor(v)
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(f"{name}: expected an int or an integer array (int32 or int64), got "
                            f"{_args.describe(v)}") from e
        if v.numel() == 0:
            v = v.to(torch.int64)  # [] is float32 to torch
    _check_dtype(v, name)
    return v


def _index(v, like: torch.Tensor, name: str):
    """Positions as an int32/int64 contiguous tensor on like's device; non-integers raise TypeError."""
    if v is None:
        return None
    v = _as_tensor(v, name)
    if v.dtype not in (torch.int32, torch.int64):
        v = v.to(torch.int64)
    return v.to(like.device).contiguous()


def _positions(v, like: torch.Tensor):
    """(start, ids) from positions: an integer scalar (int, numpy or 0-d tensor) or one id per token."""
    if v is None:
        return 0, None
    if not isinstance(v, torch.Tensor):
        start = _args.scalar(v, "positions")
        if start is not None:
            return start, None
    v = _as_tensor(v, "positions")
    if v.dim() == 0:
        return _args.scalar(int(v), "positions"), None
    return 0, _index(v, like, "positions")


def _direction(direction) -> Direction:
    if isinstance(direction, str):
        if direction not in ("forward", "backward", "inverse"):
            raise ValueError(f"direction: expected 'forward', 'backward' or 'inverse', got {direction!r}")
        return getattr(Direction, direction)
    return direction


def _last_contiguous(x):
    return x if x is None or x.numel() == 0 or x.stride(-1) == 1 else x.contiguous()


def _required(like, start, offsets, ids, cu_seqlens) -> int:
    """The largest position + 1 of a call: the sequence length HF's dynamic rules see."""
    seq = like.shape[1] if like.dim() == 4 else like.shape[0]
    if seq == 0:
        return 0
    if cu_seqlens is not None:
        cu = cu_seqlens.to(torch.int64).cpu()
        lengths = cu[1:] - cu[:-1]
        starts = torch.zeros_like(lengths) if offsets is None else offsets.to(torch.int64).cpu()
        ends = (starts + lengths)[lengths > 0]
        return int(ends.max()) if ends.numel() else 0
    if offsets is not None:
        return int(offsets.max()) + seq if offsets.numel() else 0
    if ids is not None:
        return int(ids.max()) + 1 if ids.numel() else 0
    return start + seq


class _SeqLenRope:
    """A table plus its spec for a scheme whose frequencies follow the call's length (dynamic NTK,
    LongRoPE), as HF's forward: the table where its frequencies are the call's, else the spec (the
    call's frequencies computed in the kernel). Resolving is a function of the positions only, so a
    backward resolves to what its forward used."""

    __slots__ = ("table", "spec", "__weakref__")

    def __init__(self, table: RopeTable):
        self.table = table
        self.spec = table.spec

    def resolve(self, like, start, offsets, ids, cu_seqlens):
        seq_len = _required(like, start, offsets, ids, cu_seqlens)
        return self.table if _C.frequency_seq_len(self.spec, seq_len) == self.table.seq_len else self.spec


def _run(q, k, rope, start, offsets, ids, cu_seqlens, direction, xpos_center, compute_sincos, num_threads=0):
    """Out of place: returns (q_out, k_out); q may be None when only k is rotated (k-side xPos).

    rope: a RopeTable (its frequencies, whatever the positions), a RopeSpec (the frequencies for the
    largest position + 1, computed in the kernel) or a _SeqLenRope."""
    if q is None:
        # The core rotates q and k together; an empty q (no heads) lets k be rotated alone.
        q = k.new_empty(k.shape[:-2] + (0,) + k.shape[-1:])
    q = _last_contiguous(q.detach())
    k = _last_contiguous(None if k is None else k.detach())
    if isinstance(rope, _SeqLenRope):
        rope = rope.resolve(q, start, offsets, ids, cu_seqlens)
    q_out, k_out = _outputs_like(q, k)
    table, spec = (rope, None) if isinstance(rope, RopeTable) else (None, rope)
    _C.apply(q, k, q_out, k_out, table=table, spec=spec, start=start, offsets=offsets, ids=ids,
             cu_seqlens=cu_seqlens, direction=direction, xpos_center=xpos_center, compute_sincos=compute_sincos,
             num_threads=num_threads, stream=_stream(q))
    return q_out, k_out


def _no_heads(like):
    return like.new_empty(like.shape[:-2] + (0,) + like.shape[-1:])


def _outputs_like(q, k):
    """The outputs _run writes (the fake implementation of the op allocates the same)."""
    q = _last_contiguous(q)
    k = _last_contiguous(k)
    return torch.empty_like(q), None if k is None else torch.empty_like(k)


class RopeFunction(torch.autograd.Function):
    """q, k -> rotated q, k. backward rotates the incoming gradients with the transposed direction,
    through RopeFunction again, so it is differentiable."""

    @staticmethod
    def forward(ctx, q, k, rope, start, offsets, ids, cu_seqlens, xpos_center, compute_sincos, direction,
                num_threads=0):
        if isinstance(rope, _SeqLenRope):
            rope = rope.resolve(q if q is not None else k, start, offsets, ids, cu_seqlens)
        q_out, k_out = _run(q, k, rope, start, offsets, ids, cu_seqlens, direction, xpos_center, compute_sincos,
                            num_threads)
        ctx.rope = rope  # immutable: backward uses exactly the forward's frequencies
        ctx.args = (start, xpos_center, compute_sincos, num_threads)
        ctx.direction = direction
        ctx.has_q = q is not None
        ctx.has_k = k is not None
        ctx.save_for_backward(offsets, ids, cu_seqlens)
        ctx.set_materialize_grads(False)
        return q_out, k_out

    @staticmethod
    def backward(ctx, grad_q, grad_k):
        if ctx.direction == Direction.inverse:
            raise RuntimeError("ropekit: the inverse direction has no backward kernel")
        offsets, ids, cu_seqlens = ctx.saved_tensors
        start, xpos_center, compute_sincos, num_threads = ctx.args
        gq = grad_q if ctx.has_q and ctx.needs_input_grad[0] else None
        gk = grad_k if ctx.has_k and ctx.needs_input_grad[1] else None
        if gq is None and gk is None:
            return (None,) * 11
        dq, dk = RopeFunction.apply(gq, gk, ctx.rope, start, offsets, ids, cu_seqlens, xpos_center, compute_sincos,
                                    _TRANSPOSED[ctx.direction], num_threads)
        return (dq if gq is not None else None, dk) + (None,) * 9


def _rope(spec: RopeSpec | None, table: RopeTable | None):
    if (spec is None) == (table is None):
        raise ValueError("ropekit: give exactly one of spec= or table=")
    if table is not None and not isinstance(table, RopeTable):
        raise TypeError(f"table: expected a ropekit.RopeTable, got {type(table).__name__}")
    if spec is not None and not isinstance(spec, RopeSpec):
        raise TypeError(f"spec: expected a ropekit.RopeSpec, got {type(spec).__name__}")
    return table if table is not None else spec


def apply_rope(q: torch.Tensor | None, k: torch.Tensor | None = None, *, spec: RopeSpec | None = None,
               table: RopeTable | None = None, positions=None, offsets=None, cu_seqlens=None,
               xpos_center: float = 0.0, compute_sincos: bool = False, direction=Direction.forward,
               num_threads: int = 0):
    """Differentiable rotation of torch tensors (out of place). Returns q_out, or (q_out, k_out) with k.

    q may be None when only k is given (k-side xPos scaling). positions: an integer start or one
    integer id per token (floats and bools are a TypeError).
    """
    if (NATIVE_OPS and k is not None and q is not None and type(positions) is int and offsets is None
            and cu_seqlens is None and direction is Direction.forward and spec is None and type(table) is RopeTable
            and 0 <= positions < _START_LIMIT):
        # Decode's call (a table, a start): the op directly, the checks below are the op's own.
        handle = _handle(table)
        return _native_rope(q, k, handle, positions, None, None, None, 0, float(xpos_center), bool(compute_sincos),
                            num_threads)
    return _apply(q, k, _rope(spec, table), positions, offsets, cu_seqlens, xpos_center, compute_sincos,
                  direction, num_threads)


def _apply(q, k, rope, positions, offsets, cu_seqlens, xpos_center, compute_sincos, direction, num_threads):
    like = q if q is not None else k
    if like is None:
        raise ValueError("ropekit: give q, k or both")
    start, ids = _positions(positions, like)
    offsets = _index(offsets, like, "offsets")
    cu_seqlens = _index(cu_seqlens, like, "cu_seqlens")
    direction = _direction(direction)
    if NATIVE_OPS:
        # One op for eager and compiled calls; its autograd is C++. A missing side has no heads.
        q_out, k_out = _native_rope(q if q is not None else _no_heads(k), k if k is not None else _no_heads(q),
                                    _handle(rope), start, offsets, ids, cu_seqlens, _DIRECTION_INDEX[direction],
                                    float(xpos_center), bool(compute_sincos), num_threads)
    elif torch.compiler.is_compiling():
        q_out, k_out = _op_call(q, k, rope, start, offsets, ids, cu_seqlens, direction, float(xpos_center),
                                bool(compute_sincos), num_threads)
    else:
        q_out, k_out = RopeFunction.apply(q, k, rope, start, offsets, ids, cu_seqlens, float(xpos_center),
                                          bool(compute_sincos), direction, num_threads)
    if q is None:
        return k_out
    return q_out if k is None else (q_out, k_out)


def rope_of_table(table: RopeTable):
    """What the autograd function and the op take for a table: the table itself, or for a scheme
    whose frequencies follow the call's length (dynamic NTK, LongRoPE) the table plus its spec."""
    dynamic = _C.frequency_seq_len(table.spec, 1 << 62) != 0
    return _SeqLenRope(table) if dynamic else table


class RotaryEmbedding(torch.nn.Module):
    """Owns a cos/sin table for ``spec`` and rotates q and k: forward(q, k=None, positions=0, ...).

    Dynamic NTK and LongRoPE follow each call's length (largest position + 1) as HF's forward does:
    calls within the table's frequencies read the table, others compute theirs in the kernel. The
    table never changes; assigning ``table`` replaces it (calls already made keep theirs).
    """

    def __init__(self, spec: RopeSpec, max_positions: int = 0, exact: bool = False):
        super().__init__()
        self.spec = spec
        self.table = RopeTable(spec, max_positions, exact=exact)

    @property
    def table(self) -> RopeTable:
        return self._table

    @table.setter
    def table(self, table: RopeTable) -> None:
        if not isinstance(table, RopeTable):
            raise TypeError(f"table: expected a ropekit.RopeTable, got {type(table).__name__}")
        self._table = table
        self._rope = rope_of_table(table)

    def forward(self, q, k=None, positions=None, offsets=None, cu_seqlens=None, xpos_center: float = 0.0):
        return _apply(q, k, self._rope, positions, offsets, cu_seqlens, xpos_center, False, Direction.forward, 0)

    def extra_repr(self) -> str:
        return self.spec.describe()


# --- torch.library custom op: opaque to torch.compile, so no graph breaks ------------------------------------

# Tables and specs are C++ objects; the op names them by an integer handle. Handles made for the
# compiled path hold weak references (a graph does not keep a table alive); register_table's are strong.
_registry_lock = threading.RLock()
_weak: dict[int, weakref.ref] = {}
_strong: dict[int, object] = {}
_handle_by_id: dict[int, int] = {}
_next_handle = itertools.count(1)


# With the native ops the handles are ropekit._C's (its registry holds a copy of the table or spec,
# which the C++ operators read without Python); a weak handle is forgotten there when its object dies.


def _forget(key: int) -> None:
    with _registry_lock:
        handle = _handle_by_id.pop(key, None)
        _weak.pop(handle, None)
        if NATIVE_OPS and handle is not None:
            _C._torch_forget(handle)


def _register(rope, strong: bool) -> int:
    # Without the lock first (the per-call path): while rope lives, its id names its handle or none.
    handle = _handle_by_id.get(id(rope))
    if handle is not None and (not strong or handle in _strong):
        return handle
    with _registry_lock:
        handle = _handle_by_id.get(id(rope))
        if handle is None:
            if NATIVE_OPS:
                dynamic = isinstance(rope, _SeqLenRope)
                handle = _C._torch_register(rope.table if dynamic else rope, dynamic)
            else:
                handle = next(_next_handle)
                _weak[handle] = weakref.ref(rope)
            weakref.finalize(rope, _forget, id(rope))
            _handle_by_id[id(rope)] = handle
        if strong:
            _strong[handle] = rope
        return handle


def _lookup(handle: int):
    with _registry_lock:
        rope = _strong.get(handle)
        if rope is None and handle in _weak:
            rope = _weak[handle]()
    if rope is None:
        raise ValueError(f"table: handle {handle} names no live ropekit table or spec (register_table() returns "
                         f"handles; a compiled graph does not keep its tables alive)")
    return rope


def register_table(table: RopeTable) -> int:
    """A handle for rope_op; the table stays alive for the life of the process."""
    if not isinstance(table, (RopeTable, RopeSpec)):
        raise TypeError(f"table: expected a ropekit.RopeTable, got {type(table).__name__}")
    return _register(table, strong=True)


@torch.compiler.assume_constant_result
def _handle(rope) -> int:
    # Evaluated while tracing; the graph keeps the integer.
    return _register(rope, strong=False)


def _python_ops():
    """The ops as Python custom ops (no _torch_ops.so): the same schemas, a Python registry of handles."""

    @torch.library.custom_op("ropekit::rope", mutates_args=())
    def _rope_op(q: torch.Tensor, k: torch.Tensor, table: int, start: int, offsets: torch.Tensor | None,
                 ids: torch.Tensor | None, cu_seqlens: torch.Tensor | None, direction: int, xpos_center: float,
                 compute_sincos: bool, num_threads: int) -> tuple[torch.Tensor, torch.Tensor]:
        q_out, k_out = _run(q, k, _lookup(table), start, offsets, ids, cu_seqlens, _DIRECTIONS[direction], xpos_center,
                            compute_sincos, num_threads)
        return q_out, k_out

    @_rope_op.register_fake
    def _(q, k, table, start, offsets, ids, cu_seqlens, direction, xpos_center, compute_sincos, num_threads):
        return _outputs_like(q, k)

    def _setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs[4:7])
        ctx.args = (inputs[2], inputs[3]) + tuple(inputs[7:])

    def _op_backward(ctx, gq, gk):
        table, start, direction, xpos_center, compute_sincos, num_threads = ctx.args
        if direction == _DIRECTIONS.index(Direction.inverse):
            raise RuntimeError("ropekit: the inverse direction has no backward kernel")
        offsets, ids, cu_seqlens = ctx.saved_tensors
        back = _DIRECTIONS.index(_TRANSPOSED[_DIRECTIONS[direction]])
        dq, dk = _rope_op(gq, gk, table, start, offsets, ids, cu_seqlens, back, xpos_center, compute_sincos, num_threads)
        return dq, dk, None, None, None, None, None, None, None, None, None

    _rope_op.register_autograd(_op_backward, setup_context=_setup)

    @torch.library.custom_op("ropekit::rotary_embedding", mutates_args=("query", "key"))
    def _rotary_embedding_op(positions: torch.Tensor, query: torch.Tensor, key: torch.Tensor | None, head_size: int,
                             cos_sin_cache: torch.Tensor, is_neox: bool, rope_dim_offset: int, inverse: bool,
                             num_threads: int, mrope_section: list[int] | None = None,
                             mrope_interleaved: bool = False) -> None:
        _C.rotary_embedding(positions.contiguous(), query, key, head_size, cos_sin_cache, is_neox, rope_dim_offset,
                            inverse, num_threads=num_threads, stream=_stream(query), mrope_section=mrope_section,
                            mrope_interleaved=mrope_interleaved)

    @_rotary_embedding_op.register_fake
    def _(positions, query, key, head_size, cos_sin_cache, is_neox, rope_dim_offset, inverse, num_threads,
          mrope_section=None, mrope_interleaved=False):
        return None

    return _rope_op, _rotary_embedding_op


if NATIVE_OPS:
    _rope_op, _rotary_embedding_op = _native_rope, _native_rotary
else:
    _rope_op, _rotary_embedding_op = _python_ops()


def _op_call(q, k, rope, start, offsets, ids, cu_seqlens, direction, xpos_center, compute_sincos, num_threads):
    if q is None:
        q = k.new_empty(k.shape[:-2] + (0,) + k.shape[-1:])
    if k is None:
        k = q.new_empty(q.shape[:-2] + (0,) + q.shape[-1:])
    return _rope_op(q, k, _handle(rope), start, offsets, ids, cu_seqlens, _DIRECTIONS.index(direction), xpos_center,
                    compute_sincos, num_threads)


def rope_op(q, k, table_handle: int, start: int = 0, xpos_center: float = 0.0):
    """Custom-op form with a register_table() handle (positions from an offset): traceable by
    torch.compile(fullgraph=True). ropekit.torch.apply_rope uses the op by itself when compiled."""
    first = _args.scalar(start, "start")
    if first is None:
        raise TypeError(f"start: expected an int, got {_args.describe(start)}")
    return _rope_op(q, k, table_handle, first, None, None, None, 0, float(xpos_center), False, 0)


# --- the engine calling convention: in place, the caller's cos/sin cache -----------------------------------


def rotary_embedding(positions, query: torch.Tensor, key: torch.Tensor | None, head_size: int,
                     cos_sin_cache: torch.Tensor, is_neox: bool, rope_dim_offset: int = 0, inverse: bool = False,
                     *, num_threads: int = 0, mrope_section=None, mrope_interleaved: bool = False):
    """ropekit.rotary_embedding for torch tensors: in place, as the op ropekit::rotary_embedding under
    torch.compile (no graph break). Tensors that require grad are refused (an in-place rotation with
    a caller's cache has no backward here; use apply_rope). mrope_section / mrope_interleaved: M-RoPE
    with positions [3, T] (see ropekit.rotary_embedding). Returns (query, key)."""
    mrope_section = None if mrope_section is None or len(mrope_section) == 0 else list(mrope_section)
    if NATIVE_OPS:
        # The op refuses tensors that require grad and bumps the version counters itself.
        if not (isinstance(positions, torch.Tensor) and positions.dtype in _INDEX_DTYPES):
            positions = _index(positions, query, "positions")
        _native_rotary(positions, query, key, head_size, cos_sin_cache, is_neox, rope_dim_offset, inverse, num_threads,
                       mrope_section, mrope_interleaved)
        return query, key
    for name, t in (("query", query), ("key", key)):
        if t is not None and t.requires_grad and torch.is_grad_enabled():
            raise ValueError(f"{name}: requires grad; rotary_embedding rotates in place without autograd "
                             f"(use ropekit.torch.apply_rope, or torch.no_grad())")
    if not (isinstance(positions, torch.Tensor) and positions.dtype in (torch.int32, torch.int64)):
        positions = _index(positions, query, "positions")
    if torch.compiler.is_compiling():
        _rotary_embedding_op(positions, query, key, head_size, cos_sin_cache, is_neox, rope_dim_offset, inverse,
                             num_threads, mrope_section, mrope_interleaved)
    else:
        _C.rotary_embedding(positions.contiguous(), query, key, head_size, cos_sin_cache, is_neox, rope_dim_offset,
                            inverse, num_threads=num_threads, stream=_stream(query), mrope_section=mrope_section,
                            mrope_interleaved=mrope_interleaved)
        # Written through DLPack: tell autograd, so a tensor it saved cannot be used stale.
        torch.autograd.graph.increment_version([query] if key is None else [query, key])
    return query, key


def _inplace_fast(q, k, spec, table, positions, offsets, cu_seqlens, backward, inverse, direction, xpos_center,
                  compute_sincos, num_threads, q_out, k_out):
    """ropekit.apply_rope(inplace=True) on plain tensors with a start: the native op straight away;
    NotImplemented: anything else, which ropekit.apply_rope handles (and checks) as before."""
    if (type(k) is not torch.Tensor and k is not None) or type(positions) is not int or offsets is not None \
            or cu_seqlens is not None or backward or inverse or direction is not None or q_out is not None \
            or k_out is not None or not 0 <= positions < _START_LIMIT:
        return NotImplemented
    rope = table if spec is None else spec if table is None else None
    if type(rope) is not RopeTable and type(rope) is not RopeSpec:
        return NotImplemented
    handle = _handle(rope)
    # The op refuses tensors that require grad and bumps the version counters.
    _native_rope_(q, k, handle, positions, None, None, None, 0, float(xpos_center), bool(compute_sincos), num_threads)
    return q if k is None else (q, k)


if NATIVE_OPS:
    from . import _set_torch_fast

    _set_torch_fast(torch.Tensor, _inplace_fast, rotary_embedding)
