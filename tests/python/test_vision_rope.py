"""Vision-encoder 2-D RoPE (RopeSpec(axial=Axial2d(...)), positions (2, N)) against the real
transformers vision towers' rotary embeddings and their apply functions: Qwen2-VL, Qwen2.5-VL,
Qwen3-VL, Qwen3.5 and GLM-4V (axial, half style, patches in spatial-merge order), Pixtral (odd
frequencies for columns) and Llama 4 vision (complex pairs, x + 1 / y + 1, CLS unrotated). Tiny
configs with the released head sizes, no downloads; rotated q/k and gradients fp32 <= 1e-5."""
import importlib

import numpy as np
import pytest

import ropekit

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
import ropekit.torch  # noqa: E402
from transformers.vision_utils import get_vision_position_ids  # noqa: E402

# model module: (vision config class, rotary class, config fields, head_dim). Head sizes as
# released: 80 (Qwen2-VL, Qwen2.5-VL), 72 (Qwen3-VL), 64 (Qwen3.5), 96 (GLM-4.1V).
QWEN_TOWERS = {
    "qwen2_vl": ("Qwen2VLVisionConfig", "Qwen2VLVisionRotaryEmbedding", dict(embed_dim=160, num_heads=2), 80),
    "qwen2_5_vl": ("Qwen2_5_VLVisionConfig", "Qwen2_5_VLVisionRotaryEmbedding", dict(hidden_size=160, num_heads=2), 80),
    "qwen3_vl": ("Qwen3VLVisionConfig", "Qwen3VLVisionRotaryEmbedding", dict(hidden_size=144, num_heads=2), 72),
    "qwen3_5": ("Qwen3_5VisionConfig", "Qwen3_5VisionRotaryEmbedding", dict(hidden_size=128, num_heads=2), 64),
    "glm4v": ("Glm4vVisionConfig", "Glm4vVisionRotaryEmbedding", dict(hidden_size=192, num_heads=2), 96),
}


def load(module_name, config_name, rotary_name, fields):
    modeling = importlib.import_module(f"transformers.models.{module_name}.modeling_{module_name}")
    configuration = importlib.import_module(f"transformers.models.{module_name}.configuration_{module_name}")
    config = getattr(configuration, config_name)(**fields)
    return modeling, config, getattr(modeling, rotary_name)(config)


def rel_err(got, want):
    got, want = got.detach().double(), want.detach().double()
    return float((got - want).abs().max() / want.abs().max())


def grids_of(seed, merge):
    rng = np.random.default_rng(seed)
    return torch.tensor([[int(rng.integers(1, 3)), merge * int(rng.integers(1, 6)), merge * int(rng.integers(1, 6))]
                         for _ in range(3)])


@pytest.mark.parametrize("name", sorted(QWEN_TOWERS))
def test_qwen_family_vision_towers(name):
    config_name, rotary_name, fields, head_dim = QWEN_TOWERS[name]
    modeling, config, rotary = load(name, config_name, rotary_name, fields)
    assert rotary.inv_freq.numel() * 4 == head_dim
    merge = config.spatial_merge_size
    grid = grids_of(1, merge)
    hf_ids = get_vision_position_ids(grid, merge)  # (N, 2): row, column
    ids = ropekit.vision_position_ids(grid, spatial_merge_size=merge)
    assert torch.equal(ids, hf_ids.T)
    N, H = hf_ids.shape[0], 2
    g = torch.Generator().manual_seed(2)
    q = torch.randn(N, H, head_dim, generator=g, requires_grad=True)
    k = torch.randn(N, H, head_dim, generator=g, requires_grad=True)
    cos, sin = rotary(q, hf_ids)
    want_q, want_k = modeling.apply_rotary_pos_emb_vision(q, k, cos, sin)
    spec = ropekit.RopeSpec(head_dim, base=config.rope_parameters["rope_theta"], axial=ropekit.Axial2d())
    got_q, got_k = ropekit.torch.apply_rope(q, k, spec=spec, positions=ids)
    assert rel_err(got_q, want_q) <= 1e-5 and rel_err(got_k, want_k) <= 1e-5
    w = torch.randn(want_q.shape, generator=g)
    gq_want, gk_want = torch.autograd.grad((want_q * w).sum() + want_k.square().sum(), (q, k))
    gq, gk = torch.autograd.grad((got_q * w).sum() + got_k.square().sum(), (q, k))
    assert rel_err(gq, gq_want) <= 1e-5 and rel_err(gk, gk_want) <= 1e-5
    # numpy, in place, and a table past the largest position (cos/sin in the kernel)
    qn = q.detach().numpy().copy()
    ropekit.apply_rope(qn, spec=spec, positions=ids.numpy(), inplace=True)
    assert rel_err(torch.from_numpy(qn), want_q) <= 1e-5
    small = ropekit.RopeTable(spec, 2)
    got_q, _ = ropekit.apply_rope(q.detach(), k.detach(), table=small, positions=ids)
    assert rel_err(got_q, want_q) <= 1e-5


def test_pixtral():
    modeling, config, rotary = load("pixtral", "PixtralVisionConfig", "PixtralVisionRotaryEmbedding",
                                    dict(hidden_size=128, num_attention_heads=2, head_dim=64))
    grid = torch.tensor([[1, 5, 7], [1, 3, 2]])
    # HF's PixtralVisionModel.forward: each image's patches row-major, (row, column)
    hf_ids = torch.cat([torch.stack([h.flatten(), w.flatten()], dim=-1) for h, w in
                        (torch.meshgrid(torch.arange(int(r)), torch.arange(int(c)), indexing="ij") for _, r, c in grid)])
    ids = ropekit.vision_position_ids(grid)
    assert torch.equal(ids, hf_ids.T)
    g = torch.Generator().manual_seed(3)
    N = hf_ids.shape[0]
    q = torch.randn(1, 2, N, 64, generator=g)  # (B, H, N, D): HF's attention layout
    k = torch.randn(1, 2, N, 64, generator=g)
    cos, sin = rotary(q, hf_ids)
    want_q, want_k = modeling.apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=0)
    spec = ropekit.RopeSpec(64, base=config.rope_parameters["rope_theta"], axial=ropekit.Axial2d(odd_second_half=True))
    got_q, got_k = ropekit.apply_rope(q[0].transpose(0, 1), k[0].transpose(0, 1), spec=spec, positions=ids)
    assert rel_err(got_q.transpose(0, 1)[None], want_q) <= 1e-5 and rel_err(got_k.transpose(0, 1)[None], want_k) <= 1e-5


def test_llama4_vision():
    modeling, config, rotary = load("llama4", "Llama4VisionConfig", "Llama4VisionRotaryEmbedding",
                                    dict(hidden_size=176, num_attention_heads=2, image_size=48, patch_size=8,
                                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0}))
    side = config.image_size // config.patch_size
    head_dim = config.hidden_size // config.num_attention_heads  # 88, as Llama 4's vision heads
    freqs_ci = rotary(torch.zeros(1))  # (side^2 + 1, 1, head_dim / 2) complex
    ids = ropekit.vision_position_ids(torch.tensor([[1, side, side]]), columns_first=True, start=1, cls_token=True)
    N = side * side + 1
    assert ids.shape == (2, N) and ids[:, -1].tolist() == [0, 0]
    g = torch.Generator().manual_seed(4)
    q = torch.randn(2, N, 2, head_dim, generator=g)  # (B, N, H, D) as Llama4VisionAttention
    k = torch.randn(2, N, 2, head_dim, generator=g)
    want_q, want_k = modeling.vision_apply_rotary_emb(q, k, freqs_ci)
    spec = ropekit.RopeSpec(head_dim, base=10000.0, style=ropekit.Style.interleaved, axial=ropekit.Axial2d())
    got_q, got_k = ropekit.apply_rope(q, k, spec=spec, positions=ids[:, None, :].expand(2, 2, N).contiguous())
    assert rel_err(got_q, want_q) <= 1e-5 and rel_err(got_k, want_k) <= 1e-5
    assert torch.equal(got_q[:, -1], q[:, -1])  # the CLS token is not rotated


def test_bad_axial_input_names_the_argument():
    with pytest.raises(ValueError, match=r"rotary_dim: expected a multiple of 4 for axial"):
        ropekit.RopeSpec(6, axial=ropekit.Axial2d())
    with pytest.raises(ValueError, match=r"scaling: expected none with axial"):
        ropekit.RopeSpec(64, axial=ropekit.Axial2d(), scaling=ropekit.Linear(2.0))
    spec = ropekit.RopeSpec(64, axial=ropekit.Axial2d())
    q = torch.randn(6, 2, 64)
    with pytest.raises(ValueError, match=r"positions\.axes: expected 1 or 2 \(the spec's axial 2-D axes; several axes "
                                         r"come axis-major: ids \(2, B, S\) or \(2, T\), not \(B, S, 2\)\), got 3"):
        ropekit.apply_rope(q, spec=spec, positions=torch.zeros(3, 6, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"grids\[1\]: expected h and w divisible by spatial_merge_size \(2\)"):
        ropekit.vision_position_ids([[1, 4, 4], [1, 3, 4]], spatial_merge_size=2)
    with pytest.raises(ValueError, match=r"grid_thw: expected rows of 3 values \(t, h, w\), got shape \(1, 2\)"):
        ropekit.vision_position_ids([[1, 4]])
