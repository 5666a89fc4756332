"""ropekit.hf.patch against transformers' own models: tiny random-weight models built from the real
architectures' configs (2 layers, no downloads); logits and gradients of the patched model against
the unpatched one, eager and compiled."""
import sys

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import ropekit.hf as rh  # noqa: E402

T = transformers
VOCAB = 128


def _tiny(name, **overrides):
    model_cls, config_cls, extra = ARCHS[name]
    fields = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, max_position_embeddings=256, pad_token_id=0, eos_token_id=1,
                  bos_token_id=2)
    fields.update(extra)
    fields.update(overrides)
    config = config_cls(**fields)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    return model_cls(config).eval()


ARCHS = {
    "llama": (T.LlamaForCausalLM, T.LlamaConfig, {}),
    "mistral": (T.MistralForCausalLM, T.MistralConfig, {}),
    "qwen2": (T.Qwen2ForCausalLM, T.Qwen2Config, {}),
    "qwen3": (T.Qwen3ForCausalLM, T.Qwen3Config, {}),
    "phi3": (T.Phi3ForCausalLM, T.Phi3Config, {}),
    "gemma2": (T.Gemma2ForCausalLM, T.Gemma2Config, {}),
    "gemma3": (T.Gemma3ForCausalLM, T.Gemma3TextConfig,
               {"layer_types": ["sliding_attention", "full_attention"], "sliding_window": 8}),
}

# Scaled variants, each read from the config by ropekit and checked against HF's forward.
SCALED = {
    "llama-linear": ("llama", {"rope_parameters": {"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0}}),
    "llama-dynamic": ("llama", {"max_position_embeddings": 16,
                                "rope_parameters": {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0}}),
    "llama-yarn": ("llama", {"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0,
                                                 "original_max_position_embeddings": 64}}),
    "llama-llama3": ("llama", {"rope_parameters": {"rope_type": "llama3", "factor": 8.0, "rope_theta": 500000.0,
                                                   "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                   "original_max_position_embeddings": 64}}),
    "phi3-partial": ("phi3", {"partial_rotary_factor": 0.5}),
    "phi3-longrope": ("phi3", {"max_position_embeddings": 64, "original_max_position_embeddings": 16,
                               "rope_parameters": {"rope_type": "longrope", "rope_theta": 10000.0,
                                                   "short_factor": [1.0 + 0.1 * i for i in range(8)],
                                                   "long_factor": [2.0 + 0.5 * i for i in range(8)],
                                                   "original_max_position_embeddings": 16}}),
    "gemma3-linear-full": ("gemma3", {"rope_parameters": {
        "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
        "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0}}}),
}


def _ids(batch=2, seq=12, seed=1):
    return torch.randint(3, VOCAB, (batch, seq), generator=torch.Generator().manual_seed(seed))


def _logits(model, ids, **kw):
    with torch.no_grad():
        return model(ids, use_cache=False, **kw).logits


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture(autouse=True)
def unpatch_after(monkeypatch):
    """Each test's patched models are unpatched after it (patches outlive a test otherwise)."""
    patched = []
    patch = rh.patch

    def tracked(model, *args, **kwargs):
        patch(model, *args, **kwargs)
        patched.append(model)
        return model

    monkeypatch.setattr(rh, "patch", tracked)
    yield
    for model in patched:
        if rh.is_patched(model):
            rh.unpatch(model)


@pytest.fixture
def calls(monkeypatch):
    """Counts ropekit rotations (one per attention layer per forward)."""
    count = [0]
    rotate = rh._rotate

    def counted(*args):
        count[0] += 1
        return rotate(*args)

    monkeypatch.setattr(rh, "_rotate", counted)
    return count


@pytest.mark.parametrize("name", list(ARCHS))
def test_logits_match_unpatched(name, calls):
    model = _tiny(name)
    ids = _ids()
    want = _logits(model, ids)
    rh.patch(model)
    calls[0] = 0
    got = _logits(model, ids)
    assert calls[0] == model.config.num_hidden_layers
    assert torch.isfinite(got).all()
    assert _rel(got, want) <= 1e-5
    rh.unpatch(model)
    assert torch.equal(_logits(model, ids), want)


@pytest.mark.parametrize("case", list(SCALED))
def test_scaled_configs_match(case, calls):
    name, overrides = SCALED[case]
    model = _tiny(name, **overrides)
    # Beyond the original context, so dynamic NTK and LongRoPE switch frequencies; then a short call.
    long_ids, short_ids = _ids(seq=40), _ids(seq=9, seed=2)
    want = [_logits(model, long_ids), _logits(model, short_ids)]
    rh.patch(model)
    calls[0] = 0
    got = [_logits(model, long_ids), _logits(model, short_ids)]
    assert calls[0] == 2 * model.config.num_hidden_layers
    for g, w in zip(got, want):
        assert _rel(g, w) <= 1e-5


@pytest.mark.parametrize("name", ["llama", "phi3", "gemma3"])
def test_gradients_match(name):
    ids = _ids()

    def grads(model):
        model.zero_grad()
        logits = model(ids, use_cache=False).logits
        (logits.square().mean()).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model = _tiny(name)
    want = grads(model)
    rh.patch(model)
    got = grads(model)
    assert set(got) == set(want)
    for n in want:
        assert _rel(got[n], want[n]) <= 1e-5, n


def test_padded_batch_and_generation_match():
    """Left padding (position ids from the attention mask) and greedy decoding with a KV cache."""
    model = _tiny("llama")
    ids = _ids(batch=2, seq=10)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0
    ids[1, :4] = 0
    want = model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0)
    want_logits = _logits(model, ids, attention_mask=mask)
    rh.patch(model)
    got = model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert torch.equal(got, want)
    assert _rel(_logits(model, ids, attention_mask=mask)[mask.bool()], want_logits[mask.bool()]) <= 1e-5


def test_bf16_within_the_models_own_noise():
    model = _tiny("llama")
    ids = _ids()
    reference = _logits(model, ids)
    model = model.to(torch.bfloat16)
    hf_error = _rel(_logits(model, ids).float(), reference)
    rh.patch(model)
    ours = _logits(model, ids)
    assert ours.dtype == torch.bfloat16
    # ropekit rounds once from fp32 where HF rounds cos/sin and each product to bf16.
    assert _rel(ours.float(), reference) <= 1.5 * hf_error + 1e-3


def _rope_op_calls(prof) -> int:
    return sum(1 for e in prof.function_events if e.name == "ropekit::rope")


@pytest.mark.parametrize("name,backend", [("llama", "eager"), ("gemma3", "eager"), ("llama", "inductor")])
def test_compiled_fullgraph(name, backend):
    ids = _ids()
    model = _tiny(name)
    want = model(ids, use_cache=False).logits
    want.square().mean().backward()
    want_grad = model.model.layers[0].self_attn.q_proj.weight.grad.clone()
    model.zero_grad()
    rh.patch(model)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    compiled(ids, use_cache=False).logits.square().mean().backward()  # compile both graphs unprofiled
    model.zero_grad()
    with torch.autograd.profiler.profile() as forward:
        got = compiled(ids, use_cache=False).logits
    with torch.autograd.profiler.profile() as backward:
        got.square().mean().backward()
    # ropekit's op ran in every layer, forward and backward (the backward is the op again).
    assert _rope_op_calls(forward) == model.config.num_hidden_layers
    assert _rope_op_calls(backward) == model.config.num_hidden_layers
    assert _rel(got.detach(), want.detach()) <= 1e-5
    assert _rel(model.model.layers[0].self_attn.q_proj.weight.grad, want_grad) <= 1e-5
    torch._dynamo.reset()


def test_other_models_of_the_family_are_unaffected():
    patched, other = _tiny("llama"), _tiny("llama", rope_parameters={"rope_type": "linear", "factor": 2.0,
                                                                      "rope_theta": 10000.0})
    ids = _ids()
    want = _logits(other, ids)
    rh.patch(patched)
    assert torch.equal(_logits(other, ids), want)  # untagged cos: HF's own function
    rh.patch(other)
    rh.unpatch(patched)
    modeling = sys.modules[type(other.model.layers[0].self_attn).__module__]
    assert getattr(modeling.apply_rotary_pos_emb, "_ropekit", False)  # still used by `other`
    assert _rel(_logits(other, ids), want) <= 1e-5
    rh.unpatch(other)
    assert not hasattr(modeling.apply_rotary_pos_emb, "_ropekit")
    assert "forward" not in other.model.rotary_emb.__dict__


def test_refuses_a_config_that_does_not_give_the_models_frequencies():
    model = _tiny("llama")
    modeling = sys.modules[type(model.model.layers[0].self_attn).__module__]
    original = modeling.apply_rotary_pos_emb
    model.config.rope_parameters = {"rope_type": "default", "rope_theta": 500000.0}
    with pytest.raises(ValueError, match="rotary_emb: the config's RoPE .* inv_freq; not patched"):
        rh.patch(model)
    assert modeling.apply_rotary_pos_emb is original
    assert not rh.is_patched(model) and "forward" not in model.model.rotary_emb.__dict__


def test_refuses_a_rotation_other_than_the_standard_one(monkeypatch):
    model = _tiny("llama")
    modeling = sys.modules[type(model.model.layers[0].self_attn).__module__]

    def interleaved(q, k, cos, sin, unsqueeze_dim=1):  # a model rotating adjacent pairs instead
        def rot(x):
            x1, x2 = x[..., 0::2], x[..., 1::2]
            return torch.stack((-x2, x1), dim=-1).flatten(-2)
        cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
        return q * cos + rot(q) * sin, k * cos + rot(k) * sin

    monkeypatch.setattr(modeling, "apply_rotary_pos_emb", interleaved)
    with pytest.raises(ValueError, match="apply_rotary_pos_emb: its rotation is not ropekit's"):
        rh.patch(model)
    assert modeling.apply_rotary_pos_emb is interleaved


def test_bad_use_is_a_clear_error():
    model = _tiny("llama")
    with pytest.raises(ValueError, match="model: not patched"):
        rh.unpatch(model)
    rh.patch(model)
    with pytest.raises(ValueError, match="model: already patched"):
        rh.patch(model)
    rh.unpatch(model)
    gpt2 = T.GPT2LMHeadModel(T.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=VOCAB))
    with pytest.raises(ValueError, match="model: no rotary embedding module"):
        rh.patch(gpt2)
    with pytest.raises(ValueError, match="rope_parameters.rope_type: expected one of"):
        rh.spec_from_config({"head_dim": 16, "rope_parameters": {"rope_type": "fancy", "rope_theta": 1e4}})
    with pytest.raises(ValueError, match="layer_type: expected one of"):
        rh.spec_from_config(_tiny("gemma3").config, "global")


def test_spec_from_config_per_layer_type():
    config = _tiny("gemma3", **SCALED["gemma3-linear-full"][1]).config
    sliding = rh.spec_from_config(config, "sliding_attention")
    full = rh.spec_from_config(config, "full_attention")
    assert sliding.base == 10000.0 and sliding.scaling_name == "none"
    assert full.base == 1000000.0 and full.scaling_name == "linear"
    # Gemma3Config fills a null entry with its default (theta 1e4 sliding, 1e6 full); other models
    # leave a null entry's layers without RoPE.
    nulls = {"sliding_attention": None, "full_attention": None}
    assert rh.spec_from_config(dict(config.to_dict(), rope_parameters=nulls), "full_attention").base == 1e6
    other = {"model_type": "llama", "head_dim": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
             "layer_types": ["sliding_attention", "full_attention"],
             "rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 1e4}, "full_attention": None}}
    assert rh.spec_from_config(other, "full_attention") is None
    assert rh.spec_from_config(other, "sliding_attention").base == 1e4
    assert [layer.spec is None for layer in rh.model_rope(other).layers] == [False, True]
