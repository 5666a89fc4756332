"""DeepSeek-V3's RoPE layouts against transformers' own code: MLA rotates only the trailing
qk_rope_head_dim channels of each q head (rope_dim_offset = qk_nope_head_dim) and one shared k_pe
head; with rope_interleave, HF rotates interleaved pairs (2i, 2i+1) and writes the results in
half-split order (apply_rotary_pos_emb_interleave). ropekit's interleaved style writes them back in
place; the two differ by one permutation of the rope channels, the same for q and k, so q.k and the
model's outputs are the same."""
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import ropekit  # noqa: E402
import ropekit.hf as rh  # noqa: E402
from transformers.models.deepseek_v3 import modeling_deepseek_v3 as ds  # noqa: E402

NOPE, ROPE = 16, 8
YARN = {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0, "original_max_position_embeddings": 64,
        "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0}


def _config(rope_parameters=YARN, rope_interleave=True):
    config = transformers.DeepseekV3Config(
        vocab_size=128, hidden_size=64, intermediate_size=64, moe_intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1,
        n_group=1, topk_group=1, first_k_dense_replace=1, q_lora_rank=32, kv_lora_rank=16, qk_nope_head_dim=NOPE,
        qk_rope_head_dim=ROPE, v_head_dim=16, max_position_embeddings=256, rope_parameters=dict(rope_parameters),
        rope_interleave=rope_interleave, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    config._attn_implementation = "eager"
    return config


def _hf_cos_sin(config, positions):
    rotary = ds.DeepseekV3RotaryEmbedding(config)
    x = torch.zeros(1, dtype=torch.float32)
    return rotary(x, positions)


def _half_order(x):
    """Interleaved-order rope channels (r0, r1, r2, r3, ...) in HF's output order (r0, r2, ..., r1, r3, ...)."""
    return torch.cat([x[..., 0::2], x[..., 1::2]], dim=-1)


@pytest.mark.parametrize("rope_parameters", [YARN, dict(YARN, mscale=0.707, mscale_all_dim=1.0),
                                             {"rope_type": "default", "rope_theta": 10000.0}],
                         ids=["yarn", "yarn-mscale", "default"])
def test_mla_rope_slice_matches_apply_rotary_pos_emb_interleave(rope_parameters):
    config = _config(rope_parameters)
    spec = rh.spec_from_config(config)
    assert spec.head_dim == ROPE and spec.rotary_dim == ROPE
    assert spec.style == ropekit.Style.interleaved
    batch, seq, heads = 2, 37, 4
    positions = torch.arange(seq).repeat(batch, 1) + torch.tensor([[0], [150]])
    cos, sin = _hf_cos_sin(config, positions)
    g = torch.Generator().manual_seed(3)
    q = torch.randn(batch, heads, seq, NOPE + ROPE, generator=g)  # HF's [B, H, S, qk_head_dim]
    k_pe = torch.randn(batch, 1, seq, ROPE, generator=g)         # the one shared key head
    hf_q_rot, hf_k_rot = ds.apply_rotary_pos_emb_interleave(q[..., NOPE:], k_pe, cos, sin)

    # The engine convention: q rows [T, H, NOPE + ROPE] rotated from channel NOPE; k_pe its own call.
    cache = torch.from_numpy(ropekit.cos_sin_cache(spec, 256))
    ids = positions.reshape(-1)
    q_rows = q.transpose(1, 2).reshape(batch * seq, heads, NOPE + ROPE).contiguous()
    k_rows = k_pe.transpose(1, 2).reshape(batch * seq, 1, ROPE).contiguous()
    ropekit.rotary_embedding(ids, q_rows, None, NOPE + ROPE, cache, False, rope_dim_offset=NOPE)
    ropekit.rotary_embedding(ids, k_rows, None, ROPE, cache, False)
    q_out = q_rows.reshape(batch, seq, heads, -1).transpose(1, 2)
    k_out = k_rows.reshape(batch, seq, 1, ROPE).transpose(1, 2)

    assert torch.equal(q_out[..., :NOPE], q[..., :NOPE])  # the nope channels pass through untouched
    torch.testing.assert_close(_half_order(q_out[..., NOPE:]), hf_q_rot, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(_half_order(k_out), hf_k_rot, rtol=1e-5, atol=1e-5)
    # Attention logits of the rope part: the permutation cancels.
    torch.testing.assert_close(q_out[..., NOPE:] @ k_out.transpose(-1, -2), hf_q_rot @ hf_k_rot.transpose(-1, -2),
                               rtol=1e-5, atol=1e-4)

    # apply_rope on the strided rope slice of q, viewed [B, S, H, ROPE], gives the same rotation.
    rot = ropekit.torch.apply_rope(q[..., NOPE:].transpose(1, 2), spec=spec, positions=ids)
    torch.testing.assert_close(rot.transpose(1, 2), q_out[..., NOPE:], rtol=1e-6, atol=1e-6)


def test_without_rope_interleave_hf_uses_half_style_and_so_does_ropekit():
    config = _config(rope_interleave=False)
    spec = rh.spec_from_config(config)
    assert spec.style == ropekit.Style.half
    positions = torch.arange(20)[None]
    cos, sin = _hf_cos_sin(config, positions)
    g = torch.Generator().manual_seed(4)
    q = torch.randn(1, 2, 20, ROPE, generator=g)
    k = torch.randn(1, 1, 20, ROPE, generator=g)
    hf_q, hf_k = ds.apply_rotary_pos_emb(q, k, cos, sin)
    q_out, k_out = ropekit.torch.apply_rope(q.transpose(1, 2), k.transpose(1, 2), spec=spec, positions=0)
    torch.testing.assert_close(q_out.transpose(1, 2), hf_q, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(k_out.transpose(1, 2), hf_k, rtol=1e-5, atol=1e-5)


def test_model_logits_with_ropekit_interleaved_in_place_of_hf_interleave(monkeypatch):
    """A tiny DeepSeek-V3 (2 layers, MoE, MLA, YaRN) whose apply_rotary_pos_emb_interleave is replaced by
    ropekit's interleaved rotation, channels left in interleaved order: logits equal HF's."""
    config = _config()
    torch.manual_seed(0)
    model = transformers.DeepseekV3ForCausalLM(config).eval()
    ids = torch.randint(3, 128, (2, 40))
    with torch.no_grad():
        expected = model(ids).logits
    spec = rh.spec_from_config(config)
    calls = []

    def rotate_with(direction):
        def rotate(q, k, cos, sin, position_ids=None, unsqueeze_dim=1):
            calls.append(q.shape)
            q_out, k_out = ropekit.torch.apply_rope(q.transpose(1, 2), k.transpose(1, 2), spec=spec, positions=0,
                                                    direction=direction)
            return q_out.transpose(1, 2), k_out.transpose(1, 2)
        return rotate

    monkeypatch.setattr(ds, "apply_rotary_pos_emb_interleave", rotate_with(ropekit.Direction.forward))
    with torch.no_grad():
        got = model(ids).logits
    assert len(calls) == config.num_hidden_layers
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # The comparison can fail: rotating the other way changes the logits.
    monkeypatch.setattr(ds, "apply_rotary_pos_emb_interleave", rotate_with(ropekit.Direction.inverse))
    with torch.no_grad():
        wrong = model(ids).logits
    assert (wrong - expected).abs().max() > 1e-3
