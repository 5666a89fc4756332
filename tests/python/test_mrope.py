"""M-RoPE against the real transformers: each model's text rotary embedding and apply_rotary_pos_emb
(Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5, GLM-4V, GLM-4V-MoE) on tiny configs built from the real
ones, with ropekit's spec read from the same config (ropekit.hf_config_info_json). Rotated q/k and
gradients equal (fp32 <= 1e-5 relative), in HF's (3, B, S) position layout and packed (3, T); text
positions with one axis; bad positions get errors naming the argument."""
import json

import numpy as np
import pytest

import ropekit

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
import ropekit.torch  # noqa: E402

# (model module, text config class, rotary class, config fields): head sizes and sections as in
# the released checkpoints (Qwen2-VL-7B, Qwen2.5-VL-7B, Qwen3-VL-8B, Qwen3.5, GLM-4.1V, GLM-4.5V).
MODELS = {
    "qwen2_vl": ("qwen2_vl", "Qwen2VLTextConfig", "Qwen2VLRotaryEmbedding",
                 dict(hidden_size=512, num_attention_heads=4, num_key_value_heads=2,
                      rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                       "mrope_section": [16, 24, 24]})),
    "qwen2_5_vl": ("qwen2_5_vl", "Qwen2_5_VLTextConfig", "Qwen2_5_VLRotaryEmbedding",
                   dict(hidden_size=512, num_attention_heads=4, num_key_value_heads=2,
                        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                         "mrope_section": [16, 24, 24]})),
    "qwen3_vl": ("qwen3_vl", "Qwen3VLTextConfig", "Qwen3VLTextRotaryEmbedding",
                 dict(hidden_size=512, head_dim=128, num_attention_heads=4, num_key_value_heads=2,
                      rope_parameters={"rope_type": "default", "rope_theta": 5000000.0,
                                       "mrope_section": [24, 20, 20], "mrope_interleaved": True})),
    "qwen3_5": ("qwen3_5", "Qwen3_5TextConfig", "Qwen3_5TextRotaryEmbedding",
                dict(hidden_size=512, head_dim=256, num_attention_heads=4, num_key_value_heads=2,
                     num_hidden_layers=4,
                     rope_parameters={"rope_type": "default", "rope_theta": 10000000.0,
                                      "partial_rotary_factor": 0.25, "mrope_section": [11, 11, 10],
                                      "mrope_interleaved": True})),
    "glm4v": ("glm4v", "Glm4vTextConfig", "Glm4vTextRotaryEmbedding",
              dict(hidden_size=512, num_attention_heads=4, num_key_value_heads=2,
                   rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                    "partial_rotary_factor": 0.5, "mrope_section": [8, 12, 12]})),
    "glm4v_moe": ("glm4v_moe", "Glm4vMoeTextConfig", "Glm4vMoeTextRotaryEmbedding",
                  dict(hidden_size=512, head_dim=128, num_attention_heads=4, num_key_value_heads=2,
                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                        "partial_rotary_factor": 0.5, "mrope_section": [8, 12, 12]})),
}


def hf_parts(name):
    import importlib

    module_name, config_name, rotary_name, fields = MODELS[name]
    module = importlib.import_module(f"transformers.models.{module_name}.modeling_{module_name}")
    config_module = importlib.import_module(f"transformers.models.{module_name}.configuration_{module_name}")
    config = getattr(config_module, config_name)(**fields)
    return module, config, getattr(module, rotary_name)(config)


def spec_of(config):
    return ropekit.hf_config_info_json(json.dumps(config.to_dict())).spec


def head_dim_of(config):
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def mm_positions(batch, seq, seed):
    """(3, B, S) positions: text runs (three equal ids) around an image grid (t fixed, h and w a grid),
    as get_rope_index lays them out. Below ~120: HF's float32 pow gives frequencies a few ulps from
    ropekit's (rounded once from double), which at position p moves an angle by ~p ulps (far
    positions are checked against the float64 reference in the C++ case table)."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.empty(3, batch, seq, dtype=torch.int64)
    for b in range(batch):
        start = int(torch.randint(0, 30, (1,), generator=g))
        text = seq // 3
        pos[:, b, :text] = torch.arange(start, start + text)
        grid_h, grid_w = 3, (seq - 2 * text + 2) // 3
        image = torch.stack(torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")).reshape(2, -1)
        n = min(image.shape[1], seq - 2 * text)
        base = start + text
        pos[0, b, text:text + n] = base
        pos[1:, b, text:text + n] = base + image[:, :n]
        rest = seq - text - n
        after = int(pos[:, b, :text + n].max()) + 1 + int(torch.randint(0, 30, (1,), generator=g))
        pos[:, b, text + n:] = torch.arange(after, after + rest)
    return pos


def hf_rotate(module, rotary, q, k, positions):
    """HF's rotation of (B, S, H, D) q and k at (3, B, S) positions."""
    cos, sin = rotary(q, positions)
    qh, kh = module.apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), cos, sin)
    return qh.transpose(1, 2), kh.transpose(1, 2)


def rel_err(got, want):
    return float((got.detach().double() - want.detach().double()).abs().max() / want.detach().double().abs().max())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_spec_from_the_real_config(name):
    _, config, _ = hf_parts(name)
    spec = spec_of(config)
    sections = config.rope_parameters["mrope_section"]
    assert spec.mrope is not None and spec.mrope.sections == sections
    assert spec.mrope.interleaved == name.startswith(("qwen3_vl", "qwen3_5"))
    assert spec.style == (ropekit.Style.interleaved if name == "glm4v" else ropekit.Style.half)
    assert spec.rotary_dim == int(head_dim_of(config) * config.rope_parameters.get("partial_rotary_factor", 1.0))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_rotation_and_gradients_equal_hf(name):
    module, config, rotary = hf_parts(name)
    spec = spec_of(config)
    B, S, D = 2, 40, head_dim_of(config)
    Hq, Hk = config.num_attention_heads, config.num_key_value_heads
    g = torch.Generator().manual_seed(1)
    q = torch.randn(B, S, Hq, D, generator=g)
    k = torch.randn(B, S, Hk, D, generator=g)
    positions = mm_positions(B, S, seed=2)
    assert int(positions.max()) < 120
    want_q, want_k = hf_rotate(module, rotary, q, k, positions)

    got_q, got_k = ropekit.apply_rope(q, k, spec=spec, positions=positions)
    assert rel_err(got_q, want_q) <= 1e-5 and rel_err(got_k, want_k) <= 1e-5
    for compute_sincos in (False, True):  # table rows, and cos/sin in the kernel
        table = ropekit.RopeTable(spec, int(positions.max()) + 1 if not compute_sincos else 16)
        got_q, got_k = ropekit.apply_rope(q, k, table=table, positions=positions, compute_sincos=compute_sincos)
        assert rel_err(got_q, want_q) <= 1e-5 and rel_err(got_k, want_k) <= 1e-5

    # numpy, int32 ids
    npq, npk = ropekit.apply_rope(q.numpy(), k.numpy(), spec=spec, positions=positions.to(torch.int32).numpy())
    assert rel_err(torch.from_numpy(npq), want_q) <= 1e-5 and rel_err(torch.from_numpy(npk), want_k) <= 1e-5

    # packed (T, H, D) with (3, T) positions, as vLLM passes them
    pq, pk = ropekit.apply_rope(q.reshape(B * S, Hq, D), k.reshape(B * S, Hk, D), spec=spec,
                                positions=positions.reshape(3, B * S))
    assert rel_err(pq.reshape(B, S, Hq, D), want_q) <= 1e-5 and rel_err(pk.reshape(B, S, Hk, D), want_k) <= 1e-5

    # autograd: ropekit.torch against HF's own graph
    wq, wk = torch.randn(q.shape, generator=g), torch.randn(k.shape, generator=g)
    qa, ka = q.clone().requires_grad_(), k.clone().requires_grad_()
    oq, ok = ropekit.torch.apply_rope(qa, ka, spec=spec, positions=positions)
    ((oq * wq).sum() + (ok * wk).sum()).backward()
    qh, kh = q.clone().requires_grad_(), k.clone().requires_grad_()
    hq, hk = hf_rotate(module, rotary, qh, kh, positions)
    ((hq * wq).sum() + (hk * wk).sum()).backward()
    assert rel_err(oq, hq) <= 1e-5 and rel_err(ok, hk) <= 1e-5
    assert rel_err(qa.grad, qh.grad) <= 1e-5 and rel_err(ka.grad, kh.grad) <= 1e-5


@pytest.mark.parametrize("name", ["qwen2_vl", "qwen3_vl", "glm4v"])
def test_text_positions_with_one_axis(name):
    """HF expands text-only position_ids (B, S) to three equal axes; ropekit takes them as they are."""
    module, config, rotary = hf_parts(name)
    spec = spec_of(config)
    B, S, D = 2, 12, head_dim_of(config)
    g = torch.Generator().manual_seed(3)
    q = torch.randn(B, S, config.num_attention_heads, D, generator=g)
    k = torch.randn(B, S, config.num_key_value_heads, D, generator=g)
    ids = torch.arange(S).repeat(B, 1) + torch.tensor([[0], [7]])
    want_q, want_k = hf_rotate(module, rotary, q, k, ids[None].expand(3, B, S))
    for positions in (ids, ids[None].expand(3, B, S).contiguous()):
        got_q, got_k = ropekit.apply_rope(q, k, spec=spec, positions=positions)
        assert rel_err(got_q, want_q) <= 1e-5 and rel_err(got_k, want_k) <= 1e-5
    got_q, got_k = ropekit.apply_rope(q, k, spec=spec, offsets=np.array([0, 7]))
    assert rel_err(got_q, want_q) <= 1e-5 and rel_err(got_k, want_k) <= 1e-5


def test_bad_positions_name_the_argument():
    spec = ropekit.RopeSpec(128, mrope=ropekit.MRope([16, 24, 24]))
    plain = ropekit.RopeSpec(128)
    q = torch.randn(2, 5, 2, 128)
    with pytest.raises(ValueError, match=r"positions\.axes: expected 1 or 3 \(the spec's M-RoPE axes; several axes "
                                         r"come axis-major: ids \(3, B, S\) or \(3, T\), not \(B, S, 3\)\), got 2"):
        ropekit.apply_rope(q, spec=spec, positions=torch.zeros(2, 2, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"positions\.ids\.size: expected 20 \(2 axes x 10 tokens of \[2, 5, 2, 128\]; "
                                         r"several axes come axis-major: \(axes, B, S\) or \(axes, T\)\), got 30"):
        ropekit.apply_rope(q, spec=spec, positions=torch.zeros(2, 5, 3, dtype=torch.int64))  # axis-last: read as B axes
    with pytest.raises(ValueError, match=r"positions\.axes: expected 1 for a spec without mrope"):
        ropekit.apply_rope(q, spec=plain, positions=torch.zeros(3, 2, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"positions\.ids\.size: expected 30 \(3 axes x 10 tokens"):
        ropekit.apply_rope(q, spec=spec, positions=torch.zeros(3, 2, 4, dtype=torch.int64))
    bad = torch.zeros(3, 2, 5, dtype=torch.int64)
    bad[2, 1, 3] = -4
    before = q.clone()
    with pytest.raises(ValueError, match=r"positions\.ids\[28\]"):
        ropekit.apply_rope(q, spec=spec, positions=bad, inplace=True)
    assert torch.equal(q, before)
    with pytest.raises(ValueError, match=r"mrope\.sections: expected pair counts summing to rotary_dim / 2 \(64\)"):
        ropekit.RopeSpec(128, mrope=ropekit.MRope([16, 24, 23]))
    with pytest.raises(ValueError, match=r"mrope\.sections: expected 3 pair counts"):
        ropekit.MRope([32, 32])


def test_empty_sequences_with_three_axes_are_a_no_op():
    """S = 0 (or T = 0) with (3, B, 0) / (3, 0) ids rotates nothing and raises nothing (an empty
    array's strides are not checked for contiguity)."""
    spec = ropekit.RopeSpec(128, mrope=ropekit.MRope([16, 24, 24]))
    cache = ropekit.cos_sin_cache(spec, 16)
    for ids in (torch.zeros(3, 2, 0, dtype=torch.int64), torch.zeros(3, 2, 0, dtype=torch.int64).transpose(1, 2)):
        q = torch.randn(2, 0, 2, 128)
        assert ropekit.apply_rope(q, spec=spec, positions=ids).shape == q.shape
        assert ropekit.apply_rope(q.numpy(), spec=spec, positions=ids.numpy()).shape == q.shape
        assert ropekit.apply_rope(q, spec=spec, positions=ids, inplace=True) is q
    for ids in (torch.zeros(3, 0, dtype=torch.int64), torch.zeros(0, 3, dtype=torch.int64).t()):
        q, k = torch.randn(0, 256), torch.randn(0, 128)
        ropekit.rotary_embedding(ids, q, k, 128, torch.from_numpy(cache), True, mrope_section=[16, 24, 24])
        ropekit.rotary_embedding(ids.numpy(), q.numpy(), k.numpy(), 128, cache, True, mrope_section=[16, 24, 24])


def test_engine_convention_takes_expanded_and_strided_positions():
    """rotary_embedding takes ids as apply_rope does: expanded (text tokens' one row as 3 axes) and
    transposed ((T, 3) storage read as [3, T]) ids equal their contiguous copies."""
    spec = ropekit.RopeSpec(64, mrope=ropekit.MRope([8, 12, 12]))
    cache = torch.from_numpy(ropekit.cos_sin_cache(spec, 64))
    g = torch.Generator().manual_seed(4)
    T = 9
    q, k = torch.randn(T, 3 * 64, generator=g), torch.randn(T, 64, generator=g)
    for ids in (torch.arange(T)[None].expand(3, T), torch.randint(0, 64, (T, 3), generator=g).t(),
                torch.randint(0, 64, (3, 2 * T), generator=g)[:, ::2]):
        assert not ids.is_contiguous()
        want_q, want_k = q.clone(), k.clone()
        ropekit.rotary_embedding(ids.contiguous(), want_q, want_k, 64, cache, True, mrope_section=[8, 12, 12])
        for call in (ropekit.rotary_embedding, ropekit.torch.rotary_embedding):
            got_q, got_k = q.clone(), k.clone()
            call(ids, got_q, got_k, 64, cache, True, mrope_section=[8, 12, 12])
            assert torch.equal(got_q, want_q) and torch.equal(got_k, want_k)
        got_q, got_k = q.numpy().copy(), k.numpy().copy()
        ropekit.rotary_embedding(ids.numpy(), got_q, got_k, 64, cache.numpy(), True, mrope_section=[8, 12, 12])
        assert np.array_equal(got_q, want_q.numpy()) and np.array_equal(got_k, want_k.numpy())
    if ropekit.torch.NATIVE_OPS:  # the op itself, as torch.compile calls it
        got_q, got_k = q.clone(), k.clone()
        torch.ops.ropekit.rotary_embedding(torch.arange(T)[None].expand(3, T), got_q, got_k, 64, cache, True, 0, False,
                                           0, [8, 12, 12], False)
        want_q, want_k = q.clone(), k.clone()
        ropekit.rotary_embedding(torch.arange(T)[None].repeat(3, 1), want_q, want_k, 64, cache, True,
                                 mrope_section=[8, 12, 12])
        assert torch.equal(got_q, want_q) and torch.equal(got_k, want_k)


@pytest.mark.skipif(not ropekit.torch.NATIVE_OPS, reason="ropekit built without _torch_ops.so (or ROPEKIT_TORCH_OPS=0)")
@pytest.mark.parametrize("backend", ["eager", "inductor"])
def test_compile_fullgraph_and_opcheck_with_3_axis_positions(backend):
    module, config, rotary = hf_parts("qwen3_vl")
    spec = spec_of(config)
    table = ropekit.RopeTable(spec, 128)
    B, S, D = 1, 16, head_dim_of(config)
    positions = mm_positions(B, S, seed=4)
    g = torch.Generator().manual_seed(5)
    q = torch.randn(B, S, 4, D, generator=g, requires_grad=True)
    k = torch.randn(B, S, 2, D, generator=g, requires_grad=True)

    def step(q, k, positions):
        a, b = ropekit.torch.apply_rope(q, k, table=table, positions=positions)
        return a.square().sum() + (b * 3).sum()

    torch._dynamo.reset()
    compiled = torch.compile(step, fullgraph=True, backend=backend)
    want, got = step(q, k, positions), compiled(q, k, positions)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(torch.autograd.grad(got, (q, k)), torch.autograd.grad(want, (q, k)))
    hq, hk = hf_rotate(module, rotary, q.detach(), k.detach(), positions)
    oq, ok = ropekit.torch.apply_rope(q.detach(), k.detach(), table=table, positions=positions)
    assert rel_err(oq, hq) <= 1e-5 and rel_err(ok, hk) <= 1e-5
    qo, ko = q.detach().clone().requires_grad_(), k.detach().clone().requires_grad_()
    torch.library.opcheck(torch.ops.ropekit.rope.default,
                          (qo, ko, ropekit.torch.register_table(table), 0, None, positions, None, 0, 0.0, False, 0))


# ---- position builders: ropekit.mrope_index against HF's get_rope_index ----

BUILDERS = {  # model class, ropekit options
    "qwen2_vl": ("qwen2_vl", "Qwen2VLModel", {}),
    "qwen2_5_vl": ("qwen2_5_vl", "Qwen2_5_VLModel", {"tokens_per_second": 2}),
    "qwen3_vl": ("qwen3_vl", "Qwen3VLModel", {"split_video_frames": True}),
    "qwen3_5": ("qwen3_5", "Qwen3_5Model", {"split_video_frames": True}),
    "glm4v": ("glm4v", "Glm4vModel", {"split_video_frames": True}),
}


def hf_rope_index(name, merge, **kwargs):
    """The model's own get_rope_index, on a stand-in for the model that holds only what it reads."""
    import importlib
    from types import SimpleNamespace

    module_name, class_name, options = BUILDERS[name]
    cls = getattr(importlib.import_module(f"transformers.models.{module_name}.modeling_{module_name}"), class_name)
    vision = SimpleNamespace(spatial_merge_size=merge, tokens_per_second=options.get("tokens_per_second"))
    model = SimpleNamespace(config=SimpleNamespace(vision_config=vision))
    model.get_vision_position_ids = lambda *a, **k: cls.get_vision_position_ids(model, *a, **k)
    return cls.get_rope_index(model, **kwargs)


def generated_prompts(name, batch, seed, merge=2):
    """Token types (B, S), attention mask (left padding), image and video grids, seconds per video grid:
    text runs between images and videos (a video's frames separated by text timestamps where the
    model splits them)."""
    rng = np.random.default_rng(seed)
    split = BUILDERS[name][2].get("split_video_frames", False)
    rows, images, videos = [], [], []
    for _ in range(batch):
        row = [0] * int(rng.integers(1, 5))
        for _ in range(int(rng.integers(0, 4))):
            grid = [int(rng.integers(1, 4)), merge * int(rng.integers(1, 5)), merge * int(rng.integers(1, 5))]
            per_frame = grid[1] * grid[2] // merge ** 2
            if rng.integers(0, 2) == 0:
                grid[0] = 1
                images.append(grid)
                row += [1] * per_frame
            else:
                videos.append(grid)
                for frame in range(grid[0] if split else 1):
                    row += [2] * (per_frame if split else per_frame * grid[0])
                    row += [0] * int(rng.integers(1, 3))  # timestamp / vision end text
            row += [0] * int(rng.integers(1, 4))
        rows.append(row)
    seq = max(len(r) for r in rows)
    types = np.zeros((batch, seq), dtype=np.int64)
    mask = np.zeros((batch, seq), dtype=np.int64)
    for b, row in enumerate(rows):
        types[b, seq - len(row):] = row
        mask[b, seq - len(row):] = 1
    seconds = rng.uniform(0.1, 2.0, size=len(videos)).astype(np.float32)
    return types, mask, images, videos, seconds


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("seed", range(6))
def test_mrope_index_equals_get_rope_index(name, seed):
    types, mask, images, videos, seconds = generated_prompts(name, batch=3, seed=seed)
    options = BUILDERS[name][2]
    kwargs = dict(input_ids=torch.from_numpy(types) + 100, mm_token_type_ids=torch.from_numpy(types).int(),
                  image_grid_thw=torch.tensor(images).reshape(-1, 3) if images else None,
                  video_grid_thw=torch.tensor(videos).reshape(-1, 3) if videos else None)
    if name == "qwen2_5_vl" and videos:
        kwargs["second_per_grid_ts"] = torch.from_numpy(seconds)
    for with_mask in (False, True) if not (mask == 0).any() else (True,):
        call = dict(kwargs, attention_mask=torch.from_numpy(mask) if with_mask else None)
        want_pos, want_delta = hf_rope_index(name, 2, **call)
        got_pos, got_delta = ropekit.mrope_index(
            torch.from_numpy(types).int(), call["image_grid_thw"], call["video_grid_thw"],
            attention_mask=call["attention_mask"], second_per_grid_ts=call.get("second_per_grid_ts"),
            spatial_merge_size=2, **options)
        assert torch.equal(got_pos, want_pos), (name, seed)
        assert torch.equal(got_delta, want_delta.to(got_delta.dtype)), (name, seed)
    # the same from input_ids and the image / video token ids, and as numpy
    ids = np.where(types == 1, 7, np.where(types == 2, 9, 3))
    pos_np, delta_np = ropekit.mrope_index(input_ids=ids, image_token_id=7, video_token_id=9,
                                           image_grid_thw=np.array(images).reshape(-1, 3) if images else None,
                                           video_grid_thw=np.array(videos).reshape(-1, 3) if videos else None,
                                           attention_mask=mask, second_per_grid_ts=kwargs.get("second_per_grid_ts"),
                                           **options)
    assert isinstance(pos_np, np.ndarray) and np.array_equal(pos_np, want_pos.numpy())
    assert np.array_equal(delta_np, want_delta.numpy())


def test_mrope_index_positions_rotate_as_hf_in_a_model_step():
    """The builder's positions, then the rotation, equal HF's get_rope_index then its rotary
    embedding: what a Qwen2.5-VL forward does to q and k."""
    types, mask, images, videos, seconds = generated_prompts("qwen2_5_vl", batch=2, seed=11)
    module, config, rotary = hf_parts("qwen2_5_vl")
    grids = dict(image_grid_thw=torch.tensor(images).reshape(-1, 3) if images else None,
                 video_grid_thw=torch.tensor(videos).reshape(-1, 3) if videos else None)
    want_pos, _ = hf_rope_index("qwen2_5_vl", 2, input_ids=torch.from_numpy(types), attention_mask=torch.from_numpy(mask),
                                mm_token_type_ids=torch.from_numpy(types).int(), **grids,
                                second_per_grid_ts=torch.from_numpy(seconds) if videos else None)
    got_pos, _ = ropekit.mrope_index(torch.from_numpy(types), **grids, attention_mask=torch.from_numpy(mask),
                                     second_per_grid_ts=torch.from_numpy(seconds) if videos else None,
                                     tokens_per_second=2)
    B, S = types.shape
    g = torch.Generator().manual_seed(12)
    q = torch.randn(B, S, config.num_attention_heads, head_dim_of(config), generator=g)
    k = torch.randn(B, S, config.num_key_value_heads, head_dim_of(config), generator=g)
    want_q, want_k = hf_rotate(module, rotary, q, k, want_pos)
    got_q, got_k = ropekit.apply_rope(q, k, spec=spec_of(config), positions=got_pos)
    assert rel_err(got_q, want_q) <= 1e-5 and rel_err(got_k, want_k) <= 1e-5


def test_mrope_index_bad_input_names_the_argument():
    types = np.array([[0, 1, 1, 1, 1, 0]])
    with pytest.raises(ValueError, match=r"image_grid_thw\[0\]: expected a grid of as many merged patches as its "
                                         r"run of 4 tokens"):
        ropekit.mrope_index(types, [[1, 4, 6]])
    with pytest.raises(ValueError, match=r"image_grid_thw: expected every grid taken"):
        ropekit.mrope_index(types, [[1, 4, 4], [1, 2, 2]])
    with pytest.raises(ValueError, match=r"image_grid_thw: expected a grid for the image run"):
        ropekit.mrope_index(types)
    with pytest.raises(ValueError, match=r"attention_mask: expected shape \(1, 6\)"):
        ropekit.mrope_index(types, [[1, 4, 4]], attention_mask=np.ones((1, 5), dtype=np.int64))
    positions, _ = ropekit.mrope_index(types, [[1, 4, 4]], attention_mask=torch.ones(1, 6, dtype=torch.bool))
    assert positions.shape == (3, 1, 6)
    with pytest.raises(ValueError, match=r"token_types: expected a 2-D"):
        ropekit.mrope_index(types[0], [[1, 4, 4]])
    with pytest.raises(TypeError, match=r"token_types"):
        ropekit.mrope_index(types.astype(np.float32), [[1, 4, 4]])


@pytest.mark.parametrize("name", ["qwen2_vl", "qwen3_vl"])
def test_engine_convention_with_mrope(name):
    """ropekit.rotary_embedding with mrope_section and [3, T] positions, as vLLM's MRotaryEmbedding
    is called, equals HF's rotation; numpy and torch (native op, opcheck, torch.compile)."""
    module, config, rotary = hf_parts(name)
    spec = spec_of(config)
    D, Hq, Hk = head_dim_of(config), config.num_attention_heads, config.num_key_value_heads
    positions = mm_positions(1, 24, seed=8)  # (3, 1, T)
    T = positions.shape[-1]
    g = torch.Generator().manual_seed(9)
    q = torch.randn(1, T, Hq, D, generator=g)
    k = torch.randn(1, T, Hk, D, generator=g)
    want_q, want_k = hf_rotate(module, rotary, q, k, positions)
    cache = torch.from_numpy(ropekit.cos_sin_cache(spec, 128))
    section, interleaved = spec.mrope.sections, spec.mrope.interleaved
    flat = positions.reshape(3, T)
    qe, ke = q.reshape(T, Hq * D).clone(), k.reshape(T, Hk * D).clone()
    ropekit.rotary_embedding(flat, qe, ke, D, cache, True, mrope_section=section, mrope_interleaved=interleaved)
    assert rel_err(qe.reshape(1, T, Hq, D), want_q) <= 1e-5 and rel_err(ke.reshape(1, T, Hk, D), want_k) <= 1e-5
    qn, kn = q.reshape(T, Hq * D).numpy().copy(), k.reshape(T, Hk * D).numpy().copy()
    ropekit.rotary_embedding(flat.numpy(), qn, kn, D, cache.numpy(), True, mrope_section=section,
                             mrope_interleaved=interleaved)
    assert rel_err(torch.from_numpy(qn).reshape(1, T, Hq, D), want_q) <= 1e-5
    if ropekit.torch.NATIVE_OPS:
        torch.library.opcheck(torch.ops.ropekit.rotary_embedding.default,
                              (flat, q.reshape(T, Hq * D).clone(), k.reshape(T, Hk * D).clone(), D, cache, True, 0,
                               False, 0, section, interleaved))

    def step(qx, kx):
        ropekit.torch.rotary_embedding(flat, qx, kx, D, cache, True, mrope_section=section,
                                       mrope_interleaved=interleaved)
        return qx * 1, kx * 1

    torch._dynamo.reset()
    got_q, got_k = torch.compile(step, fullgraph=True)(q.reshape(T, Hq * D).clone(), k.reshape(T, Hk * D).clone())
    assert rel_err(got_q.reshape(1, T, Hq, D), want_q) <= 1e-5 and rel_err(got_k.reshape(1, T, Hk, D), want_k) <= 1e-5
    with pytest.raises(ValueError, match=r"positions\.size: expected 3 T"):
        ropekit.rotary_embedding(flat.reshape(-1)[:-1], qe, ke, D, cache, True, mrope_section=section)
    with pytest.raises(ValueError, match=r"mrope_section: expected 3 section sizes"):
        ropekit.rotary_embedding(flat, qe, ke, D, cache, True, mrope_section=[32, 32])


@pytest.mark.parametrize("name, sections, interleaved", [("qwen2_vl", [2, 3, 3], False), ("qwen2_5_vl", [4, 2, 2], False),
                                                         ("qwen3_vl", [4, 2, 2], True)])
def test_hf_patch_of_mrope_text_models(name, sections, interleaved):
    """ropekit.hf.patch on the M-RoPE text decoders: the same hidden states and gradients with
    (3, B, S) positions from the builder, and text-only positions."""
    import importlib

    from ropekit import hf as rh

    module_name, config_name, _, _ = MODELS[name]
    modeling = importlib.import_module(f"transformers.models.{module_name}.modeling_{module_name}")
    config_module = importlib.import_module(f"transformers.models.{module_name}.configuration_{module_name}")
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": sections}
    if interleaved:
        rope["mrope_interleaved"] = True
    config = getattr(config_module, config_name)(
        vocab_size=64, hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=256, rope_parameters=rope)
    config._attn_implementation = "eager"
    text_model = {"qwen2_vl": "Qwen2VLTextModel", "qwen2_5_vl": "Qwen2_5_VLTextModel", "qwen3_vl": "Qwen3VLTextModel"}
    torch.manual_seed(0)
    model = getattr(modeling, text_model[name])(config).eval()
    types, mask, images, videos, seconds = generated_prompts("qwen2_vl", batch=2, seed=21)
    positions, _ = ropekit.mrope_index(torch.from_numpy(types), torch.tensor(images).reshape(-1, 3) if images else None,
                                       torch.tensor(videos).reshape(-1, 3) if videos else None)
    ids = torch.randint(3, 64, types.shape, generator=torch.Generator().manual_seed(22))

    def run():
        model.zero_grad()
        out = model(input_ids=ids, position_ids=positions).last_hidden_state
        out.square().mean().backward()
        grad = model.layers[0].self_attn.q_proj.weight.grad.clone()
        text = model(input_ids=ids).last_hidden_state.detach()
        return out.detach(), grad, text

    want, want_grad, want_text = run()
    rh.patch(model)
    try:
        got, got_grad, got_text = run()
    finally:
        rh.unpatch(model)
    # Qwen3-VL's QK-norm (an RMSNorm of q and k before RoPE) conditions the first layer's q_proj
    # gradient: cos/sin one float32 ulp apart (hidden states within 3e-7) move it by ~5e-5. HF's own
    # model with its cos/sin computed in double, as ropekit's table rows are, moves it as much
    # (5.5e-5 on this model). The rotation's own gradient is held to 1e-5 in
    # test_rotation_and_gradients_equal_hf.
    grad_tol = 2e-4 if name == "qwen3_vl" else 1e-5
    assert rel_err(got, want) <= 1e-5 and rel_err(got_text, want_text) <= 1e-5
    assert rel_err(got_grad, want_grad) <= grad_tol


def test_hf_patch_refuses_glm4v_interleaved_pairs():
    """GLM-4V's decoder rotates interleaved pairs with cos/sin repeated per element: the patch's probe
    sees a layout other than the standard one and leaves the model as it is."""
    import importlib

    from ropekit import hf as rh

    modeling = importlib.import_module("transformers.models.glm4v.modeling_glm4v")
    configuration = importlib.import_module("transformers.models.glm4v.configuration_glm4v")
    config = configuration.Glm4vTextConfig(
        vocab_size=64, hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5,
                         "mrope_section": [2, 1, 1]})
    model = modeling.Glm4vTextModel(config).eval()
    with pytest.raises(ValueError, match=r"not in the standard layout .* not patched"):
        rh.patch(model)
    assert not rh.is_patched(model)


def test_jax_arrays_with_three_axes():
    """JAX q with (3, B, S) positions (JAX or numpy): the numpy call's answer (bf16: the fp32 answer
    rounded once)."""
    jnp = pytest.importorskip("jax.numpy")
    module, config, rotary = hf_parts("qwen2_vl")
    spec = spec_of(config)
    positions = mm_positions(2, 20, seed=31)
    rng = np.random.default_rng(32)
    q = rng.standard_normal((2, 20, 4, head_dim_of(config))).astype(np.float32)
    want = ropekit.apply_rope(q, spec=spec, positions=positions.numpy())
    hq, _ = hf_rotate(module, rotary, torch.from_numpy(q), torch.from_numpy(q[:, :, :2]), positions)
    assert rel_err(torch.from_numpy(want), hq) <= 1e-5
    got = ropekit.apply_rope(jnp.asarray(q), spec=spec, positions=jnp.asarray(positions.numpy()))
    assert np.array_equal(np.asarray(got), want)
    got16 = ropekit.apply_rope(jnp.asarray(q, dtype=jnp.bfloat16), spec=spec, positions=positions.numpy())
    assert np.array_equal(np.asarray(got16), np.asarray(jnp.asarray(
        ropekit.apply_rope(np.asarray(jnp.asarray(q, dtype=jnp.bfloat16), dtype=np.float32), spec=spec,
                           positions=positions.numpy())).astype(jnp.bfloat16)))
