"""rotary_embedding (the engine calling convention) against a float64 rotation with the cache's own
values, against apply_rope, against transformers' apply_rotary_pos_emb, under torch.compile and
opcheck, and its errors."""
import numpy as np
import pytest
import torch

import ropekit
import ropekit.torch as rt
from reference import TOL, assert_close

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def unit_cache(max_position, rot_dim, rng, dtype=torch.float32):
    angles = rng.uniform(-10, 10, size=(max_position, rot_dim // 2))
    return torch.from_numpy(np.concatenate([np.cos(angles), np.sin(angles)], axis=1)).to(dtype)


def reference(positions, x, head_size, cache, is_neox, offset, inverse):
    """float64 rotation of x [T, H, head_size] with cache rows [max_position, rot_dim] as stored."""
    x = x.to(torch.float64).numpy()
    c = cache.to(torch.float64).numpy()[positions.reshape(-1)]
    rot = c.shape[1]
    half = rot // 2
    cos, sin = c[:, None, :half], c[:, None, half:] * (-1.0 if inverse else 1.0)
    y = x.copy()
    w = x[..., offset:offset + rot]
    a, b = (w[..., :half], w[..., half:]) if is_neox else (w[..., 0::2], w[..., 1::2])
    ya, yb = a * cos - b * sin, b * cos + a * sin
    if is_neox:
        y[..., offset:offset + half], y[..., offset + half:offset + rot] = ya, yb
    else:
        y[..., offset:offset + rot:2], y[..., offset + 1:offset + rot:2] = ya, yb
    return y


LAYOUTS = ["T,H*D", "T,H,D", "B,S,H*D", "B,S,H,D"]


def shaped(x, layout, batch, seq):
    """x [T, H, D] in the layout, as a view of the same memory."""
    T, H, D = x.shape
    return {"T,H*D": x.view(T, H * D), "T,H,D": x, "B,S,H*D": x.view(batch, seq, H * D),
            "B,S,H,D": x.view(batch, seq, H, D)}[layout]


@pytest.mark.parametrize("dtype", list(TORCH_DTYPES))
@pytest.mark.parametrize("cache_dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_dtype_cache_dtype_and_layout(dtype, cache_dtype, layout):
    rng = np.random.default_rng()
    batch, seq, head_size = 2, 7, 64
    T = batch * seq
    for is_neox in (True, False):
        rot = int(rng.choice([64, 32, 16]))
        offset = int(rng.integers(0, head_size - rot + 1))
        inverse = bool(rng.integers(2))
        cache = unit_cache(257, rot, rng, TORCH_DTYPES[cache_dtype])
        positions = torch.from_numpy(rng.integers(0, 257, size=T)).to(rng.choice([torch.int32, torch.int64]))
        if layout.startswith("B"):
            positions = positions.view(batch, seq)
        q = torch.from_numpy(rng.uniform(-2, 2, size=(T, 4, head_size))).to(TORCH_DTYPES[dtype])
        k = torch.from_numpy(rng.uniform(-2, 2, size=(T, 1, head_size))).to(TORCH_DTYPES[dtype])
        q0, k0 = q.clone(), k.clone()
        out = ropekit.rotary_embedding(positions, shaped(q, layout, batch, seq), shaped(k, layout, batch, seq),
                                       head_size, cache, is_neox, offset, inverse)
        assert out[0].data_ptr() == q.data_ptr()
        pos = positions.numpy().astype(np.int64)
        for got, before in ((q, q0), (k, k0)):
            assert_close(got.to(torch.float64), reference(pos, before, head_size, cache, is_neox, offset, inverse), dtype)
            keep = np.ones(head_size, bool)
            keep[offset:offset + rot] = False
            assert torch.equal(got[..., keep], before[..., keep])  # channels outside the window untouched


def test_numpy_arrays_and_no_key():
    rng = np.random.default_rng()
    cache = unit_cache(50, 32, rng)
    q = rng.uniform(-1, 1, size=(9, 3 * 32)).astype(np.float32)
    q0 = q.copy()
    positions = rng.integers(0, 50, size=9)
    ropekit.rotary_embedding(positions, q, None, 32, cache.numpy(), False)
    want = reference(positions, torch.from_numpy(q0).view(9, 3, 32), 32, cache, False, 0, False)
    assert_close(q.reshape(9, 3, 32), want)


@pytest.mark.parametrize("is_neox", [True, False])
def test_same_as_apply_rope_with_the_specs_table(is_neox):
    spec = ropekit.RopeSpec(head_dim=128, base=500000.0, style="half" if is_neox else "interleaved",
                            scaling=ropekit.Yarn(factor=4.0, original_max=1024))
    cache = torch.from_numpy(ropekit.cos_sin_cache(spec, 4096))
    assert cache.shape == (4096, 128) and cache.dtype == torch.float32
    rng = np.random.default_rng()
    positions = torch.from_numpy(rng.integers(0, 4096, size=33))
    q = torch.from_numpy(rng.uniform(-1, 1, size=(33, 8, 128)).astype(np.float32))
    k = torch.from_numpy(rng.uniform(-1, 1, size=(33, 2, 128)).astype(np.float32))
    want_q, want_k = ropekit.apply_rope(q, k, table=ropekit.RopeTable(spec, 4096), positions=positions)
    ropekit.rotary_embedding(positions, q, k, 128, cache, is_neox)
    assert torch.equal(q, want_q) and torch.equal(k, want_k)


def test_matches_transformers_apply_rotary_pos_emb():
    """The real reference: HF's rotate_half formula with cos/sin rows gathered from the cache."""
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    rng = np.random.default_rng()
    cache = unit_cache(300, 64, rng)
    positions = torch.from_numpy(rng.integers(0, 300, size=(2, 11)))
    q = torch.from_numpy(rng.uniform(-1, 1, size=(2, 11, 8, 64)).astype(np.float32))
    k = torch.from_numpy(rng.uniform(-1, 1, size=(2, 11, 2, 64)).astype(np.float32))
    cos, sin = cache[positions].chunk(2, dim=-1)
    cos, sin = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)
    want_q, want_k = llama.apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), cos, sin)
    ropekit.rotary_embedding(positions, q, k, 64, cache, True)
    torch.testing.assert_close(q, want_q.transpose(1, 2), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(k, want_k.transpose(1, 2), rtol=1e-6, atol=1e-6)


def test_inverse_undoes_forward_and_versions_bump():
    spec = ropekit.RopeSpec(head_dim=64)
    cache = torch.from_numpy(ropekit.cos_sin_cache(spec, 128))
    q = torch.randn(5, 4 * 64)
    q0 = q.clone()
    positions = torch.tensor([0, 127, 3, 64, 9])
    v = q._version
    ropekit.rotary_embedding(positions, q, None, 64, cache, True)
    assert q._version > v and not torch.equal(q, q0)
    ropekit.rotary_embedding(positions, q, None, 64, cache, True, inverse=True)
    torch.testing.assert_close(q, q0, rtol=1e-5, atol=1e-5)


def test_torch_compile_fullgraph_and_opcheck():
    spec = ropekit.RopeSpec(head_dim=64, rotary_dim=32)
    cache = torch.from_numpy(ropekit.cos_sin_cache(spec, 64))

    def step(positions, q, k):
        q = q * 2.0
        rt.rotary_embedding(positions, q, k, 64, cache, False, 16)
        return q + 1.0, k

    positions = torch.randint(0, 64, (6,))
    q, k = torch.randn(6, 4, 64), torch.randn(6, 2, 64)
    want_q, want_k = step(positions, q.clone(), k.clone())
    compiled = torch.compile(step, fullgraph=True, backend="eager")
    got_q, got_k = compiled(positions, q.clone(), k.clone())
    assert torch.equal(got_q, want_q) and torch.equal(got_k, want_k)
    inductor = torch.compile(step, fullgraph=True)
    got_q, got_k = inductor(positions, q.clone(), k.clone())
    torch.testing.assert_close(got_q, want_q)
    torch.testing.assert_close(got_k, want_k)
    torch.library.opcheck(torch.ops.ropekit.rotary_embedding.default,
                          (positions, q.clone(), k.clone(), 64, cache, True, 0, False, 0))
    torch.library.opcheck(torch.ops.ropekit.rotary_embedding.default,
                          (positions, q.clone(), None, 64, cache, False, 16, True, 0))


def test_bad_input_is_a_named_error_and_writes_nothing():
    cache = torch.ones(8, 16)
    q = torch.full((3, 2, 16), 0.5)
    k = torch.full((3, 1, 16), 0.25)
    positions = torch.tensor([0, 1, 2])

    def expect(match, positions=positions, q=q, k=k, head_size=16, cache=cache, offset=0, exc=ValueError):
        q0, k0 = q.clone(), None if k is None else k.clone()
        with pytest.raises(exc, match=match):
            ropekit.rotary_embedding(positions, q, k, head_size, cache, True, offset)
        assert torch.equal(q, q0) and (k is None or torch.equal(k, k0))

    expect(r"positions\[2\]: expected in \[0, 8\) \(the rows of cos_sin_cache\), got 8", positions=torch.tensor([0, 1, 8]))
    expect(r"positions\[0\]", positions=torch.tensor([-1, 1, 2], dtype=torch.int32))
    expect(r"cos_sin_cache.rot_dim: expected an even number > 0, got 15", cache=torch.ones(8, 15))
    expect(r"rope_dim_offset: expected <= head_size - rot_dim \(16 - 8\), got 9", cache=torch.ones(8, 8), offset=9)
    expect(r"cos_sin_cache.rot_dim: expected <= head_size \(16\), got 32", cache=torch.ones(8, 32))
    expect(r"cos_sin_cache: expected a contiguous 2-D", cache=torch.ones(16, 8).t())
    expect(r"cos_sin_cache.dtype: expected f32, f16 or bf16", cache=torch.ones(8, 16, dtype=torch.float64))
    expect(r"query.shape\[-1\]: expected a multiple of head_size \(12\)", head_size=12, cache=torch.ones(8, 8))
    expect(r"query.shape: expected 4 tokens", positions=torch.tensor([0, 1, 2, 3]))
    expect(r"key.shape", k=torch.ones(2, 1, 16))
    expect(r"key.dtype: expected f32 \(as query\)", k=torch.ones(3, 1, 16, dtype=torch.float16))
    expect(r"key: expected memory disjoint from query", k=q[:, :1])
    expect(r"positions: expected an int or an integer array", positions=torch.tensor([0.0, 1.0, 2.0]), exc=TypeError)
    expect(r"head_size: expected > 0", head_size=0)
    with pytest.raises(ValueError, match="query: requires grad"):
        ropekit.rotary_embedding(positions, q.clone().requires_grad_(), None, 16, cache, True)


def test_jax_is_refused_and_cos_sin_cache_checks_arguments():
    jnp = pytest.importorskip("jax.numpy")
    with pytest.raises(TypeError, match="JAX arrays are immutable"):
        ropekit.rotary_embedding(np.zeros(2, np.int64), jnp.zeros((2, 16)), None, 16, np.ones((4, 16), np.float32), True)
    spec = ropekit.RopeSpec(head_dim=16)
    with pytest.raises(ValueError, match="positions"):
        ropekit.cos_sin_cache(spec, -1)
    assert ropekit.cos_sin_cache(spec, 0).shape == (0, 16)
    np.testing.assert_array_equal(ropekit.cos_sin_cache(spec, 10), ropekit.RopeTable(spec, 10).table())


def test_cuda_check_errors_is_callable_everywhere():
    ropekit.cuda_check_errors()  # nothing recorded (and a no-op without CUDA)
    if ropekit._C.has_cuda and torch.cuda.is_available():
        ropekit.cuda_check_errors(torch.cuda.current_stream())
