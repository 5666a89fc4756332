"""ropekit: rotary positional embeddings with a C++ core.

Functional API over any DLPack array (numpy, torch CPU/CUDA, JAX, CuPy): results come back in the
input's framework. ``ropekit.torch`` adds autograd and ``nn.Module`` wrappers, ``ropekit.zeta`` the
Zeta-compatible seed API.
"""
from __future__ import annotations

from . import _C, _args
from ._C import (  # noqa: F401  (re-exported)
    Axial2d,
    Direction,
    DynamicNtk,
    GgufRopeInfo,
    Linear,
    Llama3,
    LongRope,
    MRope,
    NoScaling,
    NtkAware,
    Proportional,
    RopeSpec,
    RopeTable,
    Style,
    Truncated,
    Xpos,
    Yarn,
    attention_factor,
    default_inv_freq,
    find_correction_dim,
    find_correction_range,
    get_mscale,
    gguf_rope_info,
    gguf_rope_info_bytes,
    HfConfigInfo,
    hf_config_info,
    hf_config_info_json,
    LayerRope,
    ModelRope,
    QueryScale,
    linear_ramp_mask,
    spec_from_gguf,
    xpos_zeta,
)

__version__ = _C.__version__

__all__ = [
    "Axial2d", "Direction", "DynamicNtk", "Linear", "Llama3", "LongRope", "MRope", "NoScaling", "NtkAware", "Proportional",
    "RopeSpec", "RopeTable", "Style", "Truncated", "Xpos", "Yarn", "apply_rope", "attention_factor", "cos_sin_cache",
    "cuda_check_errors", "default_inv_freq", "mrope_index", "rotary_embedding", "vision_position_ids",
    "paged_kv_slots", "rerotate_kv_cache", "rotary_embedding_with_kv_cache",
    "find_correction_dim", "find_correction_range", "get_mscale", "inv_freq", "linear_ramp_mask", "xpos_zeta",
    "GgufRopeInfo", "gguf_rope_info", "gguf_rope_info_bytes", "spec_from_gguf",
    "HfConfigInfo", "LayerRope", "ModelRope", "hf_config_info", "hf_config_info_json",
    "QueryScale", "apply_query_scale",
]


# Set by ropekit.torch once its native ops are loaded: (torch.Tensor, its in-place apply, its
# rotary_embedding), so that calls on plain torch tensors skip the framework dispatch below.
_torch_fast = None


def _set_torch_fast(tensor_type, inplace_apply, rotary) -> None:
    global _torch_fast
    _torch_fast = (tensor_type, inplace_apply, rotary)


def inv_freq(spec: RopeSpec, seq_len: int = 0):
    """The inverse frequencies ``spec`` rotates with (float64 numpy array of rotary_dim/2)."""
    return _C.inv_freq(spec, seq_len)


_framework = _args.framework


def cuda_check_errors(stream=None) -> None:
    """Raise ValueError for the first invalid device-resident position (CUDA positions are checked
    by the kernel, so a bad one is reported later: by the next call on that device or here). With
    a stream (a torch.cuda.Stream or a cudaStream_t int), wait for it first. No-op without CUDA."""
    if stream is None:
        return _C.cuda_check_errors()
    handle = getattr(stream, "cuda_stream", stream)
    return _C.cuda_check_errors(int(handle), True)


def cos_sin_cache(spec: RopeSpec, max_position: int, *, exact: bool = False, seq_len: int = 0):
    """The engine cache of ``spec``: float32 numpy [max_position, rotary_dim], row p = cos(p*theta_i)
    for the rotary_dim/2 pairs, then their sines, attention factor folded in (vLLM's layout).
    Dynamic NTK and LongRoPE use the frequencies for ``seq_len``."""
    return _C.cos_sin_cache(spec, max_position, exact=exact, seq_len=seq_len)


def _grid_rows(grid, name):
    """(t, h, w) rows of an (n, 3) integer array (None: no grids) as lists."""
    if grid is None:
        return []
    a = _args.as_numpy(grid, name)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"ropekit: {name}: expected rows of 3 values (t, h, w), got shape {tuple(a.shape)}")
    return a.tolist()


def mrope_index(token_types=None, image_grid_thw=None, video_grid_thw=None, *, attention_mask=None,
                second_per_grid_ts=None, spatial_merge_size: int = 2, tokens_per_second: float = 0.0,
                split_video_frames: bool = False, input_ids=None, image_token_id=None, video_token_id=None):
    """M-RoPE positions of a multimodal prompt, as transformers' get_rope_index: (position_ids of
    shape (3, B, S), rope_deltas of shape (B, 1)), int64, torch tensors when token_types (or input_ids)
    is one, else numpy. Padding (attention_mask 0) gets position 0; decode continues every axis at
    cache_length + rope_deltas.

    token_types: (B, S), 0 text, 1 image, 2 video (HF's mm_token_type_ids); or input_ids with
    image_token_id / video_token_id. Each run of image (video) tokens takes the next row of
    image_grid_thw (video_grid_thw), (t, h, w) patches before the spatial merge. Models:
    Qwen2-VL (defaults), Qwen2.5-VL (tokens_per_second=vision_config.tokens_per_second,
    second_per_grid_ts), Qwen3-VL, Qwen3.5 and GLM-4V (split_video_frames=True: a video's frames are
    runs of their own, between timestamps).
    """
    import numpy as np

    if (token_types is None) == (input_ids is None):
        raise ValueError("ropekit: mrope_index: give token_types or input_ids (with image_token_id / video_token_id)")
    like = token_types if token_types is not None else input_ids
    if input_ids is not None:
        ids = _args.as_numpy(input_ids, "input_ids")
        types = np.zeros(ids.shape, dtype=np.int32)
        if image_token_id is not None:
            types[ids == image_token_id] = 1
        if video_token_id is not None:
            types[ids == video_token_id] = 2
    else:
        types = _args.index_array(token_types, "token_types")
    if types.ndim != 2:
        raise ValueError(f"ropekit: token_types: expected a 2-D (batch, seq) array, got shape {tuple(types.shape)}")
    mask = None
    if attention_mask is not None:  # integers or bools (a tokenizer's mask), read as 0 / 1
        mask = attention_mask.detach().cpu().numpy() if _framework(attention_mask) == "torch" else np.asarray(attention_mask)
        mask = _args.index_array(mask.astype(np.int64) if mask.dtype == np.bool_ else mask, "attention_mask")
    if mask is not None and mask.shape != types.shape:
        raise ValueError(f"ropekit: attention_mask: expected shape {tuple(types.shape)} (as token_types), "
                         f"got {tuple(mask.shape)}")

    seconds = [] if second_per_grid_ts is None else np.asarray(
        second_per_grid_ts.tolist() if hasattr(second_per_grid_ts, "tolist") else second_per_grid_ts,
        dtype=np.float64).reshape(-1).tolist()
    positions, deltas = _C.mrope_index(np.ascontiguousarray(types), types.shape[0], types.shape[1],
                                       _grid_rows(image_grid_thw, "image_grid_thw"),
                                       _grid_rows(video_grid_thw, "video_grid_thw"),
                                       spatial_merge_size, split_video_frames, float(tokens_per_second),
                                       None if mask is None else np.ascontiguousarray(mask), seconds)
    if _framework(like) == "torch":
        import torch

        device = like.device
        return torch.from_numpy(positions).to(device), torch.from_numpy(deltas).to(device)
    return positions, deltas


def vision_position_ids(grid_thw, *, spatial_merge_size: int = 1, columns_first: bool = False, start: int = 0,
                        cls_token: bool = False):
    """Positions (2, N) of the vision patches of every (t, h, w) grid in order, axis-major, for an
    axial spec (RopeSpec(axial=Axial2d(...))); torch when grid_thw is a tensor, else numpy.

    Qwen2-VL / Qwen2.5-VL / Qwen3-VL / GLM-4V vision towers: spatial_merge_size of the vision config
    (patches in merge-block order, rows then columns; HF's get_vision_position_ids transposed).
    Pixtral: the defaults (row-major). Llama 4 vision: columns_first=True, start=1, cls_token=True
    (the CLS token after the patches, at (0, 0): unrotated).
    """
    import numpy as np

    ids = _C.vision_position_ids(_grid_rows(grid_thw, "grid_thw"), spatial_merge_size, columns_first, start, cls_token)
    if _framework(grid_thw) == "torch":
        import torch

        return torch.from_numpy(np.asarray(ids)).to(grid_thw.device)
    return ids


def rotary_embedding(positions, query, key, head_size: int, cos_sin_cache, is_neox: bool, rope_dim_offset: int = 0,
                     inverse: bool = False, *, num_threads: int = 0, mrope_section=None, mrope_interleaved=False):
    """The engine calling convention (vLLM, SGLang, FlashInfer): rotate query and key in place.

    positions: int32/int64, one per token ([T] or [B, S]); query: [T, Hq*head_size], [T, Hq, head_size],
    [B, S, Hq*head_size] or [B, S, Hq, head_size], key likewise with its own head count, or None;
    cos_sin_cache: [max_position, rot_dim] (float32, float16 or bfloat16), cos half then sin half;
    is_neox: pairs (i, i + rot_dim/2), else (2i, 2i+1); rope_dim_offset: the rotated channels are
    [offset, offset + rot_dim) of each head; inverse: rotate by -theta. A position outside
    [0, max_position) is a ValueError (on a CUDA device: reported by the next call). M-RoPE (vLLM's
    MRotaryEmbedding): mrope_section, the 3 section sizes (summing to rot_dim / 2), with positions
    [3, T] (t, h, w); mrope_interleaved for Qwen3-VL's interleaved sections. Returns (query, key).
    torch tensors go through ropekit.torch.rotary_embedding (torch.compile, version counters)."""
    mrope_section = None if mrope_section is None else [int(v) for v in mrope_section]
    fast = _torch_fast
    if fast is not None and type(query) is fast[0]:
        return fast[2](positions, query, key, head_size, cos_sin_cache, is_neox, rope_dim_offset, inverse,
                       num_threads=num_threads, mrope_section=mrope_section, mrope_interleaved=mrope_interleaved)
    kind = _framework(query)
    if kind == "torch":
        from . import torch as rt

        return rt.rotary_embedding(positions, query, key, head_size, cos_sin_cache, is_neox, rope_dim_offset,
                                   inverse, num_threads=num_threads, mrope_section=mrope_section,
                                   mrope_interleaved=mrope_interleaved)
    if kind == "jax":
        raise TypeError("query: JAX arrays are immutable; rotary_embedding rotates in place (use apply_rope)")
    if key is not None and _framework(key) != kind:
        raise TypeError(f"key: expected an array of the same framework as query ({kind}), got {_framework(key)}")
    if kind == "cupy":
        positions = _cupy_index(positions, "positions")
    else:
        positions = _args.index_array(positions, "positions")
    _C.rotary_embedding(positions, query, key, head_size, cos_sin_cache, is_neox, rope_dim_offset, inverse,
                        num_threads=num_threads, mrope_section=mrope_section, mrope_interleaved=mrope_interleaved)
    return query, key


def _fp8_cache(cache, kv_cache_dtype: str):
    """A torch float8 cache as its uint8 codes, with the kv_cache_dtype it implies."""
    kind = getattr(cache, "dtype", None)
    names = {"torch.float8_e4m3fn": "fp8_e4m3", "torch.float8_e5m2": "fp8_e5m2"}
    if str(kind) not in names:
        return cache, kv_cache_dtype
    implied = names[str(kind)]
    if kv_cache_dtype not in ("auto", implied) and not (kv_cache_dtype == "fp8" and implied == "fp8_e4m3"):
        raise ValueError(f"kv_cache_dtype: expected \"auto\" or \"{implied}\" for a {kind} cache, got \"{kv_cache_dtype}\"")
    import torch

    return cache.view(torch.uint8), implied


def _scales(v, name: str) -> list:
    if v is None:
        return []
    if hasattr(v, "tolist"):
        v = v.tolist()
    values = [v] if isinstance(v, (int, float)) else list(v)
    if not all(isinstance(x, (int, float)) for x in values):
        raise TypeError(f"{name}: expected a float, a sequence of floats (one per head) or None")
    return [float(x) for x in values]


def rotary_embedding_with_kv_cache(positions, query, key, value, head_size: int, cos_sin_cache, is_neox: bool,
                                   slot_mapping, k_cache, v_cache, *, layout: str = "NHD",
                                   kv_cache_dtype: str = "auto", k_scale=None, v_scale=None,
                                   rope_dim_offset: int = 0, num_threads: int = 0, mrope_section=None,
                                   mrope_interleaved: bool = False):
    """rotary_embedding fused with the paged KV-cache write (vLLM's rotary_embedding followed by
    reshape_and_cache_flash, in one pass): query rotated in place; key rotated and value written to
    k_cache / v_cache at slot_mapping[t] (slot s: page s // page_size, token s % page_size; negative:
    skipped); key and value are left as they are. On the CPU.

    k_cache, v_cache: [pages, page_size, heads, head_dim] (layout "NHD") or [pages, heads, page_size,
    head_dim] ("HND"), any strides with a contiguous last axis: a combined [pages, 2, ...] cache is
    passed as cache[:, 0], cache[:, 1]. v_cache None with value None (a k-only cache). MLA: key is
    k_pe (one head), value the latent ckv (one head of its own width). kv_cache_dtype "auto" (the
    caches' float dtype: float32, float16, bfloat16) or "fp8" / "fp8_e4m3" / "fp8_e5m2" with uint8
    caches (torch float8_e4m3fn / float8_e5m2 caches are taken as they are); FP8 stores x / scale
    rounded to nearest even and clamped to the largest finite value, k_scale and v_scale one float
    or one per head. Everything is checked before anything is written."""
    k_cache, kv_cache_dtype = _fp8_cache(k_cache, kv_cache_dtype)
    if v_cache is not None:
        v_cache, kv_cache_dtype = _fp8_cache(v_cache, kv_cache_dtype)
    for name, t in (("query", query), ("key", key), ("value", value)):
        if t is not None and _framework(t) == "jax":
            raise TypeError(f"{name}: JAX arrays are immutable; rotary_embedding_with_kv_cache writes in place")
    mrope_section = None if mrope_section is None else [int(v) for v in mrope_section]
    _C.rotary_embedding_with_kv_cache(
        _args.index_array(positions, "positions"), query, key, value, head_size, cos_sin_cache, is_neox,
        _args.index_array(slot_mapping, "slot_mapping"), k_cache, v_cache, layout=layout,
        kv_cache_dtype=kv_cache_dtype, k_scale=_scales(k_scale, "k_scale"), v_scale=_scales(v_scale, "v_scale"),
        rope_dim_offset=rope_dim_offset, num_threads=num_threads, mrope_section=mrope_section,
        mrope_interleaved=mrope_interleaved)
    if _framework(query) == "torch":
        import torch

        torch.autograd.graph.increment_version([t for t in (query, k_cache, v_cache) if t is not None])


def rerotate_kv_cache(slots, from_positions, to_positions, cos_sin_cache, is_neox: bool, k_cache, *,
                      layout: str = "NHD", kv_cache_dtype: str = "auto", k_scale=None, rope_dim_offset: int = 0,
                      num_threads: int = 0):
    """Turn the cached keys at slots (llama.cpp's context shift, or a cached prefix reused at new
    positions) from from_positions to to_positions in place: R(to) R(from)^-1 with the cache's rows,
    in fp32, rounded once into k_cache (FP8: dequantised with k_scale and requantised). Negative
    slots are skipped; slots must be distinct. Exact for unit rows (no attention factor folded in)."""
    k_cache, kv_cache_dtype = _fp8_cache(k_cache, kv_cache_dtype)
    _C.rerotate_kv_cache(_args.index_array(slots, "slots"), _args.index_array(from_positions, "from_positions"),
                         _args.index_array(to_positions, "to_positions"), cos_sin_cache, is_neox, k_cache,
                         layout=layout, kv_cache_dtype=kv_cache_dtype, k_scale=_scales(k_scale, "k_scale"),
                         rope_dim_offset=rope_dim_offset, num_threads=num_threads)
    if _framework(k_cache) == "torch":
        import torch

        torch.autograd.graph.increment_version([k_cache])


def paged_kv_slots(batch_indices, kv_positions, kv_indices, kv_indptr, kv_last_page_len, page_size: int,
                   num_pages: int):
    """FlashInfer's page table as the slot mapping rotary_embedding_with_kv_cache takes (int64 numpy):
    token t of request batch_indices[t] at kv_positions[t] goes to page
    kv_indices[kv_indptr[b] + kv_positions[t] // page_size], slot kv_positions[t] % page_size of it.
    Positions past a request's filled pages (kv_last_page_len), page ids outside [0, num_pages) and a
    decreasing kv_indptr are ValueErrors naming the entry."""
    arrays = [_args.index_array(v, name) for v, name in ((batch_indices, "batch_indices"),
                                                         (kv_positions, "kv_positions"), (kv_indices, "kv_indices"),
                                                         (kv_indptr, "kv_indptr"),
                                                         (kv_last_page_len, "kv_last_page_len"))]
    return _C.paged_kv_slots(*arrays, page_size, num_pages)


def _empty_like(x, kind: str):
    """An output for x: x's layout where it is dense with a contiguous last axis, else C order (a
    broadcast or strided input still gets a proper output)."""
    if kind == "torch":
        import torch

        out = torch.empty_like(x)  # keeps the strides of dense layouts (BHSD stays BHSD)
        if out.dim() and out.shape[-1] > 1 and out.stride(-1) != 1:
            out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        return out
    if kind == "numpy":
        import numpy as np

        out = np.empty_like(x)
        if out.ndim and out.shape[-1] > 1 and out.strides[-1] != out.itemsize:
            out = np.empty(x.shape, dtype=x.dtype)
        return out
    if kind == "cupy":
        import cupy

        out = cupy.empty_like(x)
        if out.ndim and out.shape[-1] > 1 and out.strides[-1] != out.itemsize:
            out = cupy.empty(x.shape, dtype=x.dtype)
        return out
    if kind == "jax":
        import numpy as np

        return np.empty(x.shape, dtype=np.dtype(str(x.dtype)))
    raise TypeError(f"ropekit: cannot allocate an output like {type(x).__name__}; pass q_out=/k_out= or use inplace=True")


def _cupy_index(v, name: str):
    import cupy

    if _framework(v) != "cupy":
        return cupy.asarray(_args.index_array(v, name))
    _args.check_integer_dtype(v.dtype, name)
    return cupy.ascontiguousarray(v if v.dtype in (cupy.int32, cupy.int64) else v.astype(cupy.int64))


def _stream_of(x, kind: str) -> int:
    if kind == "torch" and x.is_cuda:
        import torch

        return torch.cuda.current_stream(x.device).cuda_stream
    return 0


def _direction(backward: bool, inverse: bool, direction) -> Direction:
    if direction is not None:
        if isinstance(direction, str):
            return getattr(Direction, direction)
        return direction
    if backward and inverse:
        raise ValueError("ropekit: give backward=True or inverse=True, not both")
    return Direction.backward if backward else Direction.inverse if inverse else Direction.forward


def apply_rope(q, k=None, *, spec: RopeSpec | None = None, table: RopeTable | None = None, positions=None,
               offsets=None, cu_seqlens=None, inplace: bool = False, backward: bool = False, inverse: bool = False,
               direction=None, xpos_center: float = 0.0, compute_sincos: bool = False, num_threads: int = 0,
               q_out=None, k_out=None, query_scale: QueryScale | None = None):
    """Rotate q (and k) of shape (batch, seq, heads, head_dim) or packed (tokens, heads, head_dim).

    query_scale: q (all its channels) is also multiplied by query_scale.at(position), in the same
    pass (LayerRope.query_scale of Llama 4, Ministral 3, Mistral 4); k is not. torch tensors that
    need a gradient get the rotation's autograd op, then the scale as a torch product.

    positions: an int (first position of every sequence, default 0) or an int array of one id per
    token (batch*seq for rank 4, tokens for rank 3). offsets: one start per sequence. cu_seqlens:
    packed sequences (rank 3), with optional offsets. Positions are integers: floats and bools are a
    TypeError. inplace rotates q and k in place (not for JAX, whose arrays are immutable). Returns
    q_out, or (q_out, k_out) when k is given.

    torch tensors that need a gradient go through ropekit.torch.apply_rope (autograd); in place or
    into q_out/k_out they are refused. In-place writes bump torch's version counters.
    """
    fast = _torch_fast
    if fast is not None and inplace and type(q) is fast[0] and query_scale is None:
        out = fast[1](q, k, spec, table, positions, offsets, cu_seqlens, backward, inverse, direction, xpos_center,
                      compute_sincos, num_threads, q_out, k_out)
        if out is not NotImplemented:
            return out
    if (spec is None) == (table is None):
        raise ValueError("ropekit: apply_rope: give exactly one of spec= or table=")
    kind = _framework(q)
    if k is not None and _framework(k) != kind:
        raise TypeError(f"k: expected an array of the same framework as q ({kind}), got {_framework(k)}")
    direction = _direction(backward, inverse, direction)
    if kind == "torch":
        return _apply_torch(q, k, spec, table, positions, offsets, cu_seqlens, inplace, direction, xpos_center,
                            compute_sincos, num_threads, q_out, k_out, query_scale)
    if kind == "jax" and str(q.dtype) == "bfloat16" and not inplace and q_out is None and k_out is None:
        # numpy cannot hold a bfloat16 output for us; the kernel's bf16 path is fp32 math rounded once
        # on store, which is exactly fp32 math on the (losslessly widened) input rounded once here.
        import jax.numpy as jnp

        out = apply_rope(q.astype(jnp.float32), None if k is None else k.astype(jnp.float32), spec=spec,
                         table=table, positions=positions, offsets=offsets, cu_seqlens=cu_seqlens,
                         direction=direction, xpos_center=xpos_center, compute_sincos=compute_sincos,
                         num_threads=num_threads, query_scale=query_scale)
        if k is None:
            return out.astype(q.dtype)
        return out[0].astype(q.dtype), out[1].astype(k.dtype)
    if kind == "cupy":
        start, ids = 0, None
        if positions is not None:
            start = _args.scalar(positions, "positions")
            if start is None:
                ids = _cupy_index(positions, "positions")
                start, ids = (_args.scalar(int(ids), "positions"), None) if ids.ndim == 0 else (0, ids)
        offsets = None if offsets is None else _cupy_index(offsets, "offsets")
        cu_seqlens = None if cu_seqlens is None else _cupy_index(cu_seqlens, "cu_seqlens")
    else:
        start, ids, offsets, cu_seqlens = _host_positions(positions, offsets, cu_seqlens)
    if inplace:
        if kind == "jax":
            raise TypeError("q: JAX arrays are immutable; use inplace=False")
        if q_out is not None or k_out is not None:
            raise ValueError("ropekit: apply_rope: inplace=True takes no q_out/k_out")
    else:
        if q_out is None:
            q_out = _empty_like(q, kind)
        if k is not None and k_out is None:
            k_out = _empty_like(k, kind)
    _C.apply(q, k, q_out, k_out, table=table, spec=spec, start=start, offsets=offsets, ids=ids,
             cu_seqlens=cu_seqlens, direction=direction, xpos_center=xpos_center,
             compute_sincos=compute_sincos, num_threads=num_threads, stream=_stream_of(q, kind),
             query_scale=query_scale)
    if inplace:
        return q if k is None else (q, k)
    if kind == "jax":
        import jax.numpy as jnp

        q_out = jnp.asarray(q_out)
        k_out = jnp.asarray(k_out) if k_out is not None else None
    return q_out if k is None else (q_out, k_out)


def _needs_grad(*tensors) -> bool:
    import torch

    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _times_query_scale(q, query_scale, positions, offsets, cu_seqlens, direction):
    """q times query_scale.at(position) (inverse: divided), differentiable: the torch form of the
    kernel's fused scale (one more rounding: of the rotation, then of the product). t comes from the
    kernel itself, scaling ones (one per token), so positions are decoded and checked in one place."""
    import torch

    from . import torch as rt

    grid = (q.shape[0], q.shape[1], 1, 1) if q.dim() == 4 else (q.shape[0], 1, 1)
    # float64 where the kernel has it (the CPU: t exact); CUDA rounds t to fp32 as the fused kernel.
    t = torch.ones(grid, dtype=torch.float64 if q.device.type == "cpu" else torch.float32, device=q.device)
    start, ids = rt._positions(positions, q)
    _C.apply_query_scale(t, None, query_scale=query_scale, start=start, offsets=rt._index(offsets, q, "offsets"),
                         ids=ids, cu_seqlens=rt._index(cu_seqlens, q, "cu_seqlens"), direction=direction,
                         stream=_stream_of(q, "torch"))
    math_dtype = torch.promote_types(q.dtype, torch.float32)
    return (q.to(math_dtype) * t.to(math_dtype)).to(q.dtype)


def _host_positions(positions, offsets, cu_seqlens):
    """(start, ids, offsets, cu_seqlens) of host (numpy-convertible) position arguments."""
    start, ids = _args.positions(positions, "positions")
    offsets = None if offsets is None else _args.index_array(offsets, "offsets")
    cu_seqlens = None if cu_seqlens is None else _args.index_array(cu_seqlens, "cu_seqlens")
    return start, ids, offsets, cu_seqlens


def apply_query_scale(q, *, query_scale: QueryScale, positions=None, offsets=None, cu_seqlens=None,
                      inplace: bool = False, direction=None, num_threads: int = 0, q_out=None):
    """q (every channel, no rotation) times query_scale.at(position): the query temperature of a
    layer without RoPE (Llama 4's NoPE layers). Positions as apply_rope. Returns q_out (q when
    inplace). direction: "backward" multiplies as forward, "inverse" divides."""
    kind = _framework(q)
    direction = _direction(False, False, direction)
    if kind == "torch":
        return _query_scale_torch(q, query_scale, positions, offsets, cu_seqlens, inplace, direction, num_threads,
                                  q_out)
    if kind == "jax" and str(q.dtype) == "bfloat16" and not inplace and q_out is None:
        # As apply_rope: fp32 math on the widened input, rounded once to bf16.
        import jax.numpy as jnp

        return apply_query_scale(q.astype(jnp.float32), query_scale=query_scale, positions=positions,
                                 offsets=offsets, cu_seqlens=cu_seqlens, direction=direction,
                                 num_threads=num_threads).astype(q.dtype)
    if kind == "cupy":
        raise TypeError("q: expected a numpy, torch or JAX array for apply_query_scale, got cupy")
    start, ids, offsets, cu_seqlens = _host_positions(positions, offsets, cu_seqlens)
    if inplace:
        if kind == "jax":
            raise TypeError("q: JAX arrays are immutable; use inplace=False")
        if q_out is not None:
            raise ValueError("ropekit: apply_query_scale: inplace=True takes no q_out")
    elif q_out is None:
        q_out = _empty_like(q, kind)
    _C.apply_query_scale(q, None if inplace else q_out, query_scale=query_scale, start=start, offsets=offsets, ids=ids,
                         cu_seqlens=cu_seqlens, direction=direction, num_threads=num_threads,
                         stream=_stream_of(q, kind))
    if inplace:
        return q
    if kind == "jax":
        import jax.numpy as jnp

        return jnp.asarray(q_out)
    return q_out


def _query_scale_torch(q, query_scale, positions, offsets, cu_seqlens, inplace, direction, num_threads, q_out):
    import torch

    from . import torch as rt

    if _needs_grad(q):
        if inplace or q_out is not None:
            raise ValueError("q: a tensor that requires grad is scaled out of place (no inplace=, no q_out=)")
        return _times_query_scale(q, query_scale, positions, offsets, cu_seqlens, direction)
    if q_out is not None and q_out.requires_grad and torch.is_grad_enabled():
        raise ValueError("q_out: requires grad; outputs written through DLPack are not recorded by autograd")
    start, ids = rt._positions(positions, q)
    if inplace and q_out is not None:
        raise ValueError("ropekit: apply_query_scale: inplace=True takes no q_out")
    out = q if inplace else q_out if q_out is not None else _empty_like(q, "torch")
    _C.apply_query_scale(q, None if inplace else out, query_scale=query_scale, start=start,
                         offsets=rt._index(offsets, q, "offsets"), ids=ids, cu_seqlens=rt._index(cu_seqlens, q, "cu_seqlens"),
                         direction=direction, num_threads=num_threads, stream=_stream_of(q, "torch"))
    torch.autograd.graph.increment_version([out])
    return out


def _apply_torch(q, k, spec, table, positions, offsets, cu_seqlens, inplace, direction, xpos_center, compute_sincos,
                 num_threads, q_out, k_out, query_scale=None):
    import torch

    from . import torch as rt

    if inplace and rt.NATIVE_OPS and q_out is None and k_out is None and query_scale is None:
        # The native op refuses tensors that require grad, and bumps the version counters.
        start, ids = rt._positions(positions, q)
        rt._native_rope_(q, k, rt._handle(table if table is not None else spec), start,
                         rt._index(offsets, q, "offsets"), ids, rt._index(cu_seqlens, q, "cu_seqlens"),
                         rt._DIRECTION_INDEX[direction], float(xpos_center), bool(compute_sincos), num_threads)
        return q if k is None else (q, k)
    grad = torch.is_grad_enabled()
    needs = [(n, t) for n, t in (("q", q), ("k", k)) if t is not None and t.requires_grad and grad]
    if needs:
        name = needs[0][0]
        if inplace:
            raise ValueError(f"{name}: requires grad, and a rotation written in place through DLPack is not "
                             f"recorded by autograd; use inplace=False (differentiable) or torch.no_grad()")
        if q_out is not None or k_out is not None:
            raise ValueError(f"{'q_out' if q_out is not None else 'k_out'}: {name} requires grad, and outputs "
                             f"written through DLPack are not recorded by autograd; leave q_out/k_out unset")
        out = rt.apply_rope(q, k, spec=spec, table=table, positions=positions, offsets=offsets,
                            cu_seqlens=cu_seqlens, xpos_center=xpos_center, compute_sincos=compute_sincos,
                            direction=direction, num_threads=num_threads)
        if query_scale is None:
            return out
        # The rotation's autograd op, then q times t(p) as a differentiable product.
        q_rot = _times_query_scale(out if k is None else out[0], query_scale, positions, offsets, cu_seqlens,
                                   direction)
        return q_rot if k is None else (q_rot, out[1])
    for name, t in (("q_out", q_out), ("k_out", k_out)):
        if t is not None and t.requires_grad and grad:
            raise ValueError(f"{name}: requires grad; outputs written through DLPack are not recorded by autograd")
    start, ids = rt._positions(positions, q)
    offsets = rt._index(offsets, q, "offsets")
    cu_seqlens = rt._index(cu_seqlens, q, "cu_seqlens")
    if inplace:
        if q_out is not None or k_out is not None:
            raise ValueError("ropekit: apply_rope: inplace=True takes no q_out/k_out")
        written = [q] if k is None else [q, k]
    else:
        if q_out is None:
            q_out = _empty_like(q, "torch")
        if k is not None and k_out is None:
            k_out = _empty_like(k, "torch")
        written = [t for t in (q_out, k_out) if t is not None]
    _C.apply(q, k, q_out, k_out, table=table, spec=spec, start=start, offsets=offsets, ids=ids,
             cu_seqlens=cu_seqlens, direction=direction, xpos_center=xpos_center,
             compute_sincos=compute_sincos, num_threads=num_threads, stream=_stream_of(q, "torch"),
             query_scale=query_scale)
    # The kernel wrote through DLPack: tell autograd, so a tensor it saved cannot be used stale.
    torch.autograd.graph.increment_version(written)
    if inplace:
        return q if k is None else (q, k)
    return q_out if k is None else (q_out, k_out)
