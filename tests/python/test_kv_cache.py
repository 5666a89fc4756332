"""rotary_embedding_with_kv_cache (RoPE + paged KV-cache write) against its unfused parts: a float64
rotation of q and k, ropekit.rotary_embedding (bit for bit), the cache write as plain torch indexing,
FP8 through torch's float8 casts; FlashInfer-style page tables through paged_kv_slots."""
import numpy as np
import pytest

import ropekit

torch = pytest.importorskip("torch")

FP8 = {"fp8_e4m3": (torch.float8_e4m3fn, 448.0), "fp8_e5m2": (torch.float8_e5m2, 57344.0)}


def rotate64(x, positions, cache, is_neox, offset=0):
    """x [T, H, D] rotated in float64 with the cache rows at positions (window [offset, offset + rot))."""
    x = x.double().clone()
    rot = cache.shape[1]
    cos, sin = cache.double()[positions].chunk(2, dim=-1)  # [T, rot/2]
    w = x[..., offset:offset + rot]
    if is_neox:
        a, b = w[..., : rot // 2], w[..., rot // 2:]
    else:
        a, b = w[..., 0::2], w[..., 1::2]
    c, s = cos[:, None], sin[:, None]
    ya, yb = a * c - b * s, b * c + a * s
    if is_neox:
        w[..., : rot // 2], w[..., rot // 2:] = ya, yb
    else:
        w[..., 0::2], w[..., 1::2] = ya, yb
    return x


def stored(x, cache_dtype, scale):
    """x as the cache stores it: its float dtype, or FP8 codes of x / scale clamped to the largest finite."""
    if cache_dtype in FP8:
        kind, top = FP8[cache_dtype]
        scale = torch.as_tensor(scale, dtype=torch.float32).reshape(-1, 1) if scale is not None else torch.tensor(1.0)
        return (x.float() / scale).clamp(-top, top).to(kind).view(torch.uint8)
    return x.to(cache_dtype)


def slots_view(cache, layout):
    """The cache as [pages * page_size, heads, head_dim] (a view: writes land in the cache)."""
    c = cache if layout == "NHD" else cache.transpose(1, 2)
    return c.reshape(-1, c.shape[2], c.shape[3]) if c.is_contiguous() else None


def write_reference(cache, layout, slots, rows):
    """cache[slot] = rows[t] for every slot >= 0, by torch indexing."""
    c = cache if layout == "NHD" else cache.transpose(1, 2)  # [pages, page_size, H, D]
    keep = slots >= 0
    s = slots[keep]
    c[s // c.shape[1], s % c.shape[1]] = rows[keep]


def make_cache(pages, page_size, heads, dim, dtype, layout, g):
    shape = (pages, page_size, heads, dim) if layout == "NHD" else (pages, heads, page_size, dim)
    if dtype in FP8:
        return torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
    return torch.randn(shape, generator=g).to(dtype)


CASES = [
    # dtype, cache dtype, layout, page_size, (Hq, Hk), head_size, rot_dim, offset, is_neox
    (torch.bfloat16, torch.bfloat16, "NHD", 16, (8, 2), 64, 64, 0, True),
    (torch.float16, torch.float16, "HND", 64, (4, 4), 32, 32, 0, False),
    (torch.float32, torch.float32, "NHD", 1, (6, 3), 16, 16, 0, True),
    (torch.bfloat16, "fp8_e4m3", "NHD", 16, (8, 2), 64, 64, 0, True),
    (torch.float16, "fp8_e5m2", "HND", 16, (4, 1), 32, 32, 0, False),
    (torch.float32, "fp8_e4m3", "HND", 64, (4, 2), 48, 16, 32, True),   # partial window at an offset
    (torch.float32, torch.bfloat16, "NHD", 16, (4, 2), 32, 32, 0, True),  # f32 k into a bf16 cache
]


@pytest.mark.parametrize("dtype, cache_dtype, layout, page_size, heads, head_size, rot_dim, offset, is_neox, per_head",
                         [c + (False,) for c in CASES] + [c + (True,) for c in CASES if c[1] in FP8])
def test_fused_equals_rope_then_cache_write(dtype, cache_dtype, layout, page_size, heads, head_size, rot_dim, offset,
                                             is_neox, per_head):
    """Ragged requests through a FlashInfer page table, a padding slot, every layout, page sizes 1 to
    64, GQA, FP8 with per-tensor and per-head scales; the caches' other bytes stay as they were."""
    g = torch.Generator().manual_seed(hash((str(dtype), str(cache_dtype), layout, page_size)) % 2**31)
    hq, hk = heads
    # A ragged batch of 3 requests appending 5, 1 and 40 tokens after 0, 30 and 7 cached ones.
    lens, cached = [5, 1, 40], [0, 30, 7]
    T = sum(lens)
    pages_each = [(c + n + page_size - 1) // page_size for c, n in zip(cached, lens)]
    num_pages = sum(pages_each) + 3
    perm = torch.randperm(num_pages, generator=g)
    indptr = np.cumsum([0] + pages_each)
    indices = perm[: indptr[-1]].numpy()
    last = [(c + n - 1) % page_size + 1 for c, n in zip(cached, lens)]
    batch = np.repeat(np.arange(3), lens)
    kv_pos = np.concatenate([np.arange(c, c + n) for c, n in zip(cached, lens)])
    slots = torch.from_numpy(ropekit.paged_kv_slots(batch, kv_pos, indices, indptr, last, page_size, num_pages))
    slots[3] = -1  # a padding token
    positions = torch.from_numpy(kv_pos)
    spec = ropekit.RopeSpec(rot_dim, style=ropekit.Style.half if is_neox else ropekit.Style.interleaved)
    cos_sin = torch.from_numpy(ropekit.cos_sin_cache(spec, 128))
    q = torch.randn(T, hq, head_size, generator=g).to(dtype)
    k = torch.randn(T, hk, head_size, generator=g).to(dtype)
    v = torch.randn(T, hk, head_size, generator=g).to(dtype)
    kc = make_cache(num_pages, page_size, hk, head_size, cache_dtype, layout, g)
    vc = make_cache(num_pages, page_size, hk, head_size, cache_dtype, layout, g)
    k_scale = v_scale = None
    if cache_dtype in FP8:
        k_scale = (torch.rand(hk, generator=g) * 0.05 + 0.002) if per_head else 0.01
        v_scale = (torch.rand(hk, generator=g) * 0.05 + 0.002) if per_head else 0.02

    # Unfused: ropekit.rotary_embedding on copies, then torch indexing writes.
    q_ref, k_ref = q.clone(), k.clone()
    ropekit.rotary_embedding(positions, q_ref.view(T, -1), k_ref.view(T, -1), head_size, cos_sin, is_neox, offset)
    tol = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 8e-3}[dtype]
    assert (q_ref.double() - rotate64(q, positions, cos_sin, is_neox, offset)).abs().max() <= tol * 4
    assert (k_ref.double() - rotate64(k, positions, cos_sin, is_neox, offset)).abs().max() <= tol * 4
    kc_ref, vc_ref = kc.clone(), vc.clone()
    write_reference(kc_ref, layout, slots, stored(k_ref, cache_dtype, k_scale))
    write_reference(vc_ref, layout, slots, stored(v, cache_dtype, v_scale))

    k0, v0 = k.clone(), v.clone()
    ropekit.rotary_embedding_with_kv_cache(positions, q.view(T, -1), k, v, head_size, cos_sin, is_neox, slots, kc, vc,
                                           layout=layout, kv_cache_dtype=cache_dtype if cache_dtype in FP8 else "auto",
                                           k_scale=k_scale, v_scale=v_scale, rope_dim_offset=offset)
    assert torch.equal(q, q_ref)
    assert torch.equal(k, k0) and torch.equal(v, v0)
    assert torch.equal(kc.view(torch.uint8), kc_ref.view(torch.uint8)), "k cache differs (or bytes outside the slots)"
    assert torch.equal(vc.view(torch.uint8), vc_ref.view(torch.uint8)), "v cache differs (or bytes outside the slots)"


def test_combined_cache_torch_float8_numpy_and_threads():
    """A combined [pages, 2, page_size, H, D] float8_e4m3fn cache passed as its two slices; the same
    call on numpy uint8 caches; 2 threads over many tokens equal 1 thread."""
    g = torch.Generator().manual_seed(5)
    T, H, D, P, ps = 600, 2, 64, 40, 16
    spec = ropekit.RopeSpec(D)
    cos_sin = torch.from_numpy(ropekit.cos_sin_cache(spec, 700))
    q = torch.randn(T, 4 * D, generator=g).bfloat16()
    kv = torch.randn(T, 2 * H * D, generator=g).bfloat16()  # k and v as slices of one buffer
    k, v = kv[:, : H * D], kv[:, H * D:]
    positions = torch.arange(T)
    slots = torch.randperm(P * ps, generator=g)[:T]
    combined = torch.zeros(P, 2, ps, H, D, dtype=torch.float8_e4m3fn)
    results = []
    for threads in (1, 2):
        qx, cache = q.clone(), combined.clone()
        ropekit.rotary_embedding_with_kv_cache(positions, qx, k, v, D, cos_sin, True, slots, cache[:, 0], cache[:, 1],
                                               k_scale=0.02, v_scale=0.03, num_threads=threads)
        results.append((qx, cache.view(torch.uint8)))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    q_ref, k_ref = q.clone(), k.clone()
    ropekit.rotary_embedding(positions, q_ref, k_ref, D, cos_sin, True)
    want = combined.clone()
    want_k, want_v = want[:, 0].reshape(-1, H, D), want[:, 1].reshape(-1, H, D)
    want_k[slots] = (k_ref.float().view(T, H, D) / 0.02).clamp(-448, 448).to(torch.float8_e4m3fn)
    want_v[slots] = (v.float().view(T, H, D) / 0.03).clamp(-448, 448).to(torch.float8_e4m3fn)
    want[:, 0] = want_k.view(P, ps, H, D)
    want[:, 1] = want_v.view(P, ps, H, D)
    assert torch.equal(results[0][0], q_ref)
    assert torch.equal(results[0][1], want.view(torch.uint8))
    # numpy uint8 caches, "fp8" (e4m3); f32 numpy inputs.
    qn, kn, vn = q.float().numpy().copy(), k.float().numpy().copy(), v.float().numpy().copy()
    kcn = np.zeros((P, ps, H, D), np.uint8)
    vcn = np.zeros((P, ps, H, D), np.uint8)
    ropekit.rotary_embedding_with_kv_cache(positions.numpy(), qn, kn, vn, D, cos_sin.numpy(), True, slots.numpy(),
                                           kcn, vcn, kv_cache_dtype="fp8", k_scale=0.02, v_scale=0.03)
    k32 = torch.from_numpy(kn).clone()
    ropekit.rotary_embedding(positions, torch.from_numpy(qn.copy()), k32, D, cos_sin, True)
    want_kn = np.zeros((P * ps, H, D), np.uint8)
    want_kn[slots.numpy()] = (k32.view(T, H, D) / 0.02).clamp(-448, 448).to(torch.float8_e4m3fn).view(torch.uint8).numpy()
    assert np.array_equal(kcn.reshape(-1, H, D), want_kn)


def test_mla_latent_and_rope_part():
    """MLA (DeepSeek): q's rope slice (a strided view of q) rotated in place, k_pe (one shared head of
    64) rotated into its cache, the 512-wide latent ckv copied into its cache."""
    g = torch.Generator().manual_seed(11)
    T, H, nope, pe, latent, ps, P = 9, 4, 128, 64, 512, 64, 2
    q = torch.randn(T, H, nope + pe, generator=g).bfloat16()
    k_pe = torch.randn(T, 1, pe, generator=g).bfloat16()
    ckv = torch.randn(T, 1, latent, generator=g).bfloat16()
    cos_sin = torch.from_numpy(ropekit.cos_sin_cache(ropekit.RopeSpec(pe, style=ropekit.Style.interleaved), 64))
    positions = torch.arange(20, 29)
    slots = torch.arange(T) + 60  # crosses the page boundary at 64
    kpe_cache = torch.zeros(P, ps, 1, pe, dtype=torch.bfloat16)
    ckv_cache = torch.zeros(P, ps, 1, latent, dtype=torch.bfloat16)
    q_pe_ref, k_pe_ref = q[..., nope:].clone(), k_pe.clone()
    ropekit.rotary_embedding(positions, q_pe_ref, k_pe_ref, pe, cos_sin, False)
    q0 = q.clone()
    ropekit.rotary_embedding_with_kv_cache(positions, q[..., nope:], k_pe, ckv, pe, cos_sin, False, slots, kpe_cache,
                                           ckv_cache)
    assert torch.equal(q[..., nope:], q_pe_ref) and torch.equal(q[..., :nope], q0[..., :nope])
    assert torch.equal(kpe_cache.view(-1, 1, pe)[slots], k_pe_ref)
    assert torch.equal(ckv_cache.view(-1, 1, latent)[slots], ckv)
    untouched = torch.ones(P * ps, dtype=torch.bool)
    untouched[slots] = False
    assert not kpe_cache.view(-1, pe)[untouched].any() and not ckv_cache.view(-1, latent)[untouched].any()


def test_bad_input_names_the_argument_and_writes_nothing():
    T, H, D, P, ps = 4, 2, 16, 3, 4
    cos_sin = torch.from_numpy(ropekit.cos_sin_cache(ropekit.RopeSpec(D), 32))
    q, k, v = torch.randn(T, 2 * H * D), torch.randn(T, H * D), torch.randn(T, H * D)
    kc, vc = torch.randn(P, ps, H, D), torch.randn(P, ps, H, D)
    q0, kc0, vc0 = q.clone(), kc.clone(), vc.clone()
    pos = torch.arange(T)

    def call(slots, **kw):
        args = dict(k_cache=kc, v_cache=vc)
        args.update(kw)
        ropekit.rotary_embedding_with_kv_cache(pos, q, k, v, D, cos_sin, True, torch.tensor(slots), args.pop("k_cache"),
                                               args.pop("v_cache"), **args)

    bad = [
        ([0, 1, 2, 12], {}, r"slot_mapping\[3\]: expected negative \(skip\) or below pages \* page_size \(12\), got 12"),
        ([0, 1, 1, 3], {}, r"slot_mapping\[2\]: expected a slot no other token writes \(token 1 writes it too\), got 1"),
        ([0, 1, 2], {}, r"slot_mapping\.size: expected 4 \(one slot per token\), got 3"),
        ([0, 1, 2, 3], {"k_scale": 0.5}, r"cache\.k_scale: expected empty for a f32 cache"),
        ([0, 1, 2, 3], {"layout": "NDH"}, r"layout: expected \"NHD\" or \"HND\""),
        ([0, 1, 2, 3], {"kv_cache_dtype": "int8"}, r"kv_cache_dtype: expected \"auto\""),
        ([0, 1, 2, 3], {"k_cache": kc[:, :, :1]}, r"cache\.k_cache\.shape\[2\]: expected 2 heads \(as its source\)"),
        ([0, 1, 2, 3], {"v_cache": vc[:2]}, r"cache\.v_cache\.shape: expected 3 pages of 4 slots \(as cache\.k_cache\)"),
        ([0, 1, 2, 3], {"layout": "HND"}, r"cache\.k_cache\.shape\[1\]: expected 2 heads"),
    ]
    for slots, kw, message in bad:
        with pytest.raises(ValueError, match=message):
            call(slots, **kw)
        assert torch.equal(q, q0) and torch.equal(kc, kc0) and torch.equal(vc, vc0), message
    with pytest.raises(TypeError, match=r"k_cache: expected dtype uint8 \(FP8 codes\) for kv_cache_dtype f8_e4m3"):
        call([0, 1, 2, 3], kv_cache_dtype="fp8")
    with pytest.raises(ValueError, match=r"kv_cache_dtype: expected \"auto\" or \"fp8_e5m2\""):
        call([0, 1, 2, 3], k_cache=kc.to(torch.float8_e5m2), v_cache=vc.to(torch.float8_e5m2), kv_cache_dtype="fp8")
    with pytest.raises(ValueError, match=r"positions\[1\]: expected in \[0, 32\)"):
        ropekit.rotary_embedding_with_kv_cache(torch.tensor([0, 40, 1, 2]), q, k, v, D, cos_sin, True,
                                               torch.arange(4), kc, vc)
    assert torch.equal(q, q0) and torch.equal(kc, kc0)


def test_page_table_errors():
    indices, indptr, last = np.array([2, 0, 1]), np.array([0, 2, 3]), np.array([3, 4])
    assert ropekit.paged_kv_slots([0, 0, 1], [0, 6, 3], indices, indptr, last, 4, 3).tolist() == [8, 2, 7]
    with pytest.raises(ValueError, match=r"kv_positions\[0\]: expected in \[0, 7\) \(request 0's pages, filled\), got 7"):
        ropekit.paged_kv_slots([0], [7], indices, indptr, last, 4, 3)
    with pytest.raises(ValueError, match=r"kv_indptr\[1\]: expected >= kv_indptr\[0\]"):
        ropekit.paged_kv_slots([0], [0], indices, [2, 0, 3], last, 4, 3)
    with pytest.raises(ValueError, match=r"kv_indices\[0\]: expected in \[0, num_pages \(2\)\), got 2"):
        ropekit.paged_kv_slots([0], [0], indices, indptr, last, 4, 2)


@pytest.mark.parametrize("cache_dtype", [torch.float32, torch.bfloat16, torch.float8_e4m3fn])
@pytest.mark.parametrize("layout", ["NHD", "HND"])
def test_rerotation_is_a_context_shift(cache_dtype, layout):
    """llama.cpp's context shift: keys cached at positions 40..79 moved to 8..47 (tokens 8..39 of the
    context dropped) equal the keys written at 8..47 directly, within the cache format's rounding."""
    g = torch.Generator().manual_seed(21)
    T, H, D, ps, P = 40, 2, 64, 16, 8
    cos_sin = torch.from_numpy(ropekit.cos_sin_cache(ropekit.RopeSpec(D), 128))
    k = torch.randn(T, H * D, generator=g)
    q = torch.empty(T, 0)
    shape = (P, ps, H, D) if layout == "NHD" else (P, H, ps, D)
    slots = torch.randperm(P * ps, generator=g)[:T]
    scale = 0.01 if cache_dtype == torch.float8_e4m3fn else None
    shifted, direct = torch.zeros(shape, dtype=cache_dtype), torch.zeros(shape, dtype=cache_dtype)
    old, new = torch.arange(40, 80), torch.arange(8, 48)
    ropekit.rotary_embedding_with_kv_cache(old, q, k, None, D, cos_sin, True, slots, shifted, None, layout=layout,
                                           k_scale=scale)
    ropekit.rotary_embedding_with_kv_cache(new, q, k, None, D, cos_sin, True, slots, direct, None, layout=layout,
                                           k_scale=scale)
    untouched = shifted.clone()
    ropekit.rerotate_kv_cache(slots, old, new, cos_sin, True, shifted, layout=layout, k_scale=scale)
    s, d = shifted.float() * (scale or 1), direct.float() * (scale or 1)
    tol = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float8_e4m3fn: 0.3}[cache_dtype]
    assert (s - d).abs().max() <= tol * k.abs().max(), (s - d).abs().max()
    assert not torch.equal(shifted.view(torch.uint8), untouched.view(torch.uint8))
    bad = slots.clone()
    bad[5] = bad[4]
    before = shifted.clone()
    with pytest.raises(ValueError, match=r"slots\[5\]: expected a slot no other token writes"):
        ropekit.rerotate_kv_cache(bad, new, old, cos_sin, True, shifted, layout=layout, k_scale=scale)
    with pytest.raises(ValueError, match=r"from_positions\[0\]: expected in \[0, 128\)"):
        ropekit.rerotate_kv_cache(slots, new + 200, old, cos_sin, True, shifted, layout=layout, k_scale=scale)
    assert torch.equal(shifted.view(torch.uint8), before.view(torch.uint8))
