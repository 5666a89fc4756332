"""Every usage example of the seed documents (shared/seeds/), import line changed to ropekit.zeta,
with its outputs checked. Where the seed's own example is broken, the test shows the corrected use."""
import math

import pytest
import torch


def test_truncated_rope_example():  # seeds/000
    import torch
    from ropekit.zeta import TruncatedRotaryEmbedding

    # Define the parameters
    dim = 64
    a = 0.1
    b = 0.9
    rho = 0.5
    seq_len = 100
    # The seed uses torch.device("cuda"); this machine may have no GPU, so cuda only when present.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    # Create the TruncatedRotaryEmbedding module
    trunc_rotary_emb = TruncatedRotaryEmbedding(dim, a, b, rho)

    # Compute the truncated rotary embeddings for the specified sequence length
    rotary_embeddings = trunc_rotary_emb(seq_len, device)
    print(rotary_embeddings)

    assert rotary_embeddings.shape == (seq_len, dim) and rotary_embeddings.device.type == device.type
    k = torch.arange(dim // 2, dtype=torch.float64)
    beta = 10000.0 ** (-2 * k / dim)
    theta = 10000.0 ** (-4 * k / dim)
    star = torch.where(theta >= b, theta, torch.where(theta < a, torch.zeros_like(theta), torch.full_like(theta, rho)))
    want = torch.arange(seq_len, dtype=torch.float64)[:, None] * (beta * star)[None]
    want = torch.cat([want, want], dim=-1)
    torch.testing.assert_close(rotary_embeddings.cpu().double(), want, rtol=1e-5, atol=1e-5)
    assert (rotary_embeddings[:, 1:32] == 0).sum() > 0  # theta_k < a truncated to 0


def test_rotate_half_example():  # seeds/001 (twice: `from zeta import` and `from zeta.nn import`)
    import torch
    from ropekit.zeta import rotate_half

    # Create an input tensor
    x = torch.randn(2, 3, 4)

    # Rotate the input tensor
    rotated_x = rotate_half(x)

    assert rotated_x.shape == (2, 3, 4)
    torch.testing.assert_close(rotated_x, torch.cat([-x[..., 2:], x[..., :2]], dim=-1), rtol=0, atol=0)
    # 90 degrees (the docs' "180 degrees" is wrong): applying it twice negates.
    torch.testing.assert_close(rotate_half(rotated_x), -x, rtol=0, atol=0)


def test_apply_rotary_pos_emb_example_corrected():  # seeds/001
    import torch
    from ropekit.zeta import SinusoidalEmbeddings, apply_rotary_pos_emb  # the seed imported only rotate_half

    # Create query and key tensors
    q = torch.randn(2, 3, 4)
    k = torch.randn(2, 3, 4)

    # Generate frequency and scale embeddings using SinusoidalEmbeddings (the seed leaves this out)
    freqs, scale = SinusoidalEmbeddings(dim=4, use_xpos=True, scale_base=8)(q)

    # Apply rotary positional embeddings
    q_emb, k_emb = apply_rotary_pos_emb(q, k, freqs, scale)

    assert q_emb.shape == (2, 3, 4) and k_emb.shape == (2, 3, 4)
    qd, kd, f, s = q.double(), k.double(), freqs.double(), scale.double()
    rh = lambda x: torch.cat([-x[..., 2:], x[..., :2]], dim=-1)  # noqa: E731
    torch.testing.assert_close(q_emb.double(), qd * f.cos() * s + rh(qd) * f.sin() * s, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(k_emb.double(), kd * f.cos() / s + rh(kd) * f.sin() / s, rtol=1e-6, atol=1e-6)
    # The rotation preserves norms when scale is 1.
    q1, k1 = apply_rotary_pos_emb(q, k, freqs, 1)
    torch.testing.assert_close(q1.norm(dim=-1), q.norm(dim=-1))


def test_sinusoidal_embeddings_example():  # seeds/001
    import torch
    from ropekit.zeta import SinusoidalEmbeddings

    # Create an instance of SinusoidalEmbeddings
    positional_embedding = SinusoidalEmbeddings(dim=512, use_xpos=True, scale_base=1000)

    # Create an input sequence tensor
    sequence = torch.randn(1, 10, 512)

    # Generate positional embeddings
    freqs, scale = positional_embedding(sequence)

    assert freqs.shape == (10, 512) and scale.shape == (10, 512)
    i = torch.arange(256, dtype=torch.float64)
    inv = 10000.0 ** (-2 * i / 512)
    t = torch.arange(10, dtype=torch.float64)
    f = t[:, None] * inv[None]
    torch.testing.assert_close(freqs.double(), torch.cat([f, f], -1), rtol=1e-6, atol=1e-6)
    zeta = (2 * i + 0.4 * 512) / (1.4 * 512)
    sc = zeta[None] ** ((t - 5) / 1000)[:, None]
    torch.testing.assert_close(scale.double(), torch.cat([sc, sc], -1), rtol=1e-6, atol=1e-6)


def test_yarn_embedding_example():  # seeds/002
    import torch
    from ropekit.zeta import YarnEmbedding

    # Create an instance of YarnEmbedding
    yarn_embedding = YarnEmbedding(dim=256, max_position_embeddings=2048)

    # Apply positional embeddings to an input tensor
    input_tensor = torch.rand(16, 32, 256)  # Example input tensor
    output = yarn_embedding(input_tensor, seq_len=32)

    cos, sin = output
    assert cos.shape == (1, 1, 32, 256) and sin.shape == (1, 1, 32, 256) and cos.dtype == input_tensor.dtype
    i = torch.arange(128, dtype=torch.float64)
    ang = torch.arange(32, dtype=torch.float64)[:, None] * (10000.0 ** (-2 * i / 256))[None]
    torch.testing.assert_close(cos[0, 0].double(), torch.cat([ang.cos(), ang.cos()], -1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sin[0, 0].double(), torch.cat([ang.sin(), ang.sin()], -1), rtol=1e-5, atol=1e-5)
    # seq_len defaults to x.shape[-2]
    assert yarn_embedding(input_tensor)[0].shape == (1, 1, 32, 256)


def test_yarn_helpers_example():  # seeds/002
    from ropekit.zeta import find_correction_dim, find_correction_range, linear_ramp_mask, get_mscale
    import torch

    # Calculate correction dimension
    correction_dim = find_correction_dim(num_rotations=8, dim=256, base=10000, max_position_embeddings=2048)

    # Calculate correction range
    low, high = find_correction_range(low_rot=16, high_rot=32, dim=256, base=10000, max_position_embeddings=2048)

    # Generate linear ramp mask
    ramp_mask = linear_ramp_mask(min=0.2, max=0.8, dim=128)

    # Calculate mscale
    mscale = get_mscale(scale=2.0)

    fcd = lambda r: 256 * math.log(2048 / (r * 2 * math.pi)) / (2 * math.log(10000))  # noqa: E731
    assert correction_dim == pytest.approx(fcd(8), rel=1e-12)
    assert (low, high) == (max(math.floor(fcd(16)), 0), min(math.ceil(fcd(32)), 255))
    assert ramp_mask.shape == (128,)
    want = torch.clamp((torch.arange(128, dtype=torch.float64) - 0.2) / 0.6, 0, 1)
    torch.testing.assert_close(ramp_mask.double(), want, rtol=1e-6, atol=1e-7)
    assert mscale == pytest.approx(0.1 * math.log(2.0) + 1.0, rel=1e-12)


def _xpos_reference(x, head_dim, scale_base, offset, downscale):
    """torchscale's XPOS in float64."""
    x = x.double()
    length = x.shape[-2]
    min_pos = -(length + offset) // 2
    zeta = (torch.arange(0, head_dim, 2, dtype=torch.float64) + 0.4 * head_dim) / (1.4 * head_dim)
    scale = zeta ** (torch.arange(min_pos, length + offset + min_pos, dtype=torch.float64) / scale_base)[:, None]
    m = head_dim // 2
    ang = torch.arange(length + offset, dtype=torch.float64)[:, None] * (10000.0 ** (-torch.arange(m, dtype=torch.float64) / m))[None]
    sin, cos = ang.sin()[-length:], ang.cos()[-length:]
    scale = scale[-length:]
    if downscale:
        scale = 1 / scale
    dup = lambda t: t.repeat_interleave(2, dim=-1)  # noqa: E731
    x1, x2 = x[..., ::2], x[..., 1::2]
    rot = torch.stack((-x2, x1), dim=-1).flatten(-2)
    return x * dup(cos * scale) + rot * dup(sin * scale)


def test_xpos_example_1():  # seeds/003
    import torch
    from ropekit.zeta import XPOS

    # Create an instance of the XPOS module
    xpos = XPOS(head_dim=256)

    # Generate a random input tensor
    x = torch.randn(1, 10, 256)

    # Apply the XPOS module to the input tensor
    output = xpos(x)

    assert output.shape == (1, 10, 256)
    torch.testing.assert_close(output.double(), _xpos_reference(x, 256, 512, 0, False), rtol=1e-5, atol=1e-5)


def test_xpos_example_2():  # seeds/003
    import torch
    from ropekit.zeta import XPOS

    # Create an instance of the XPOS module
    xpos = XPOS(head_dim=512)

    # Generate a random input tensor
    x = torch.randn(1, 20, 512)

    # Apply the XPOS module to the input tensor with offset and downscaling
    output = xpos(x, offset=2, downscale=True)

    assert output.shape == (1, 20, 512)
    torch.testing.assert_close(output.double(), _xpos_reference(x, 512, 512, 2, True), rtol=1e-5, atol=1e-5)


def test_xpos_functions_example_as_written_fails_and_corrected():  # seeds/003
    import torch
    from ropekit.zeta.xpos import fixed_pos_embedding, apply_rotary_pos_emb

    # As written: fixed_pos_embedding((10, 256)) gives (10, 256) sin/cos, duplicate_interleave makes
    # them (10, 512), which cannot multiply x (1, 10, 256). Upstream fails the same way.
    scale = torch.randn(10, 256)
    sin, cos = fixed_pos_embedding(scale)
    x = torch.randn(1, 10, 256)
    with pytest.raises(RuntimeError):
        apply_rotary_pos_emb(x, sin, cos, scale=0.5)

    # Corrected: sin/cos carry one column per pair, head_dim / 2.
    scale = torch.randn(10, 128)
    sin, cos = fixed_pos_embedding(scale)
    x = torch.randn(1, 10, 256)
    output = apply_rotary_pos_emb(x, sin, cos, scale=0.5)

    assert sin.shape == (10, 128) and cos.shape == (10, 128) and output.shape == (1, 10, 256)
    ang = torch.arange(10, dtype=torch.float64)[:, None] * (10000.0 ** (-torch.arange(128, dtype=torch.float64) / 128))[None]
    torch.testing.assert_close(sin.double(), ang.sin(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cos.double(), ang.cos(), rtol=1e-5, atol=1e-6)
    xd = x.double()
    rot = torch.stack((-xd[..., 1::2], xd[..., ::2]), dim=-1).flatten(-2)
    want = xd * (ang.cos() * 0.5).repeat_interleave(2, -1) + rot * (ang.sin() * 0.5).repeat_interleave(2, -1)
    torch.testing.assert_close(output.double(), want, rtol=1e-5, atol=1e-5)


def test_llama_code_in_seed():  # seeds/004: the functions shown, used as LLaMA does
    import torch
    from ropekit.zeta import precompute_freqs_cis, reshape_for_broadcast, apply_rotary_emb

    B, S, H, D = 2, 12, 4, 64
    freqs_cis = precompute_freqs_cis(D, S * 2)
    assert freqs_cis.dtype == torch.complex64 and freqs_cis.shape == (S * 2, D // 2)
    xq, xk = torch.randn(B, S, H, D), torch.randn(B, S, 2, D)
    with pytest.raises(ValueError):  # freqs_cis must be (S, D/2): 2S rows is refused
        reshape_for_broadcast(freqs_cis, torch.view_as_complex(xq.reshape(B, S, H, -1, 2)))
    fc = freqs_cis[:S]
    assert reshape_for_broadcast(fc, torch.view_as_complex(xq.reshape(B, S, H, -1, 2))).shape == (1, S, 1, D // 2)
    q_out, k_out = apply_rotary_emb(xq, xk, fc)
    assert q_out.shape == xq.shape and k_out.shape == xk.shape and q_out.dtype == xq.dtype
    ang = torch.arange(S, dtype=torch.float64)[:, None] * (10000.0 ** (-torch.arange(0, D, 2, dtype=torch.float64) / D))[None]
    want = torch.view_as_real(torch.view_as_complex(xq.double().reshape(B, S, H, -1, 2)) * torch.polar(torch.ones_like(ang), ang)[None, :, None]).flatten(3)
    torch.testing.assert_close(q_out.double(), want, rtol=1e-5, atol=1e-5)
