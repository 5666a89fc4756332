"""JAX (CPU) arrays through DLPack: results come back as JAX arrays."""
import numpy as np
import pytest

import ropekit
from reference import assert_close, rope

jax = pytest.importorskip("jax", reason="jax is installed by scripts/test.d/20-python.sh")
jnp = jax.numpy


def test_jax_input_returns_jax():
    spec = ropekit.RopeSpec(16, style="interleaved")
    q = np.random.default_rng().standard_normal((2, 5, 3, 16)).astype(np.float32) + 0.1
    k = np.random.default_rng().standard_normal((2, 5, 1, 16)).astype(np.float32) + 0.1
    qo, ko = ropekit.apply_rope(jnp.asarray(q), jnp.asarray(k), spec=spec, positions=4)
    assert isinstance(qo, jax.Array) and isinstance(ko, jax.Array)
    pos = np.broadcast_to(np.arange(5)[None] + 4, (2, 5))
    assert_close(np.asarray(qo), rope(q, pos, ropekit.inv_freq(spec), "interleaved"))
    assert_close(np.asarray(ko), rope(k, pos, ropekit.inv_freq(spec), "interleaved"))
    ids = jnp.asarray(np.arange(10, dtype=np.int32).reshape(2, 5) * 3)
    out = ropekit.apply_rope(jnp.asarray(q), spec=spec, positions=ids)
    assert_close(np.asarray(out), rope(q, np.asarray(ids), ropekit.inv_freq(spec), "interleaved"))


def test_jax_float16_and_inplace_refused():
    spec = ropekit.RopeSpec(16)
    q = (np.random.default_rng().standard_normal((1, 3, 2, 16)) + 0.1).astype(np.float16)
    out = ropekit.apply_rope(jnp.asarray(q), spec=spec)
    assert out.dtype == jnp.float16
    assert_close(np.asarray(out), rope(q.astype(np.float64), np.arange(3)[None], ropekit.inv_freq(spec)), "float16")
    with pytest.raises(TypeError, match="immutable"):
        ropekit.apply_rope(jnp.asarray(q), spec=spec, inplace=True)


def test_jax_bfloat16_matches_torch_bf16_kernel():
    torch = pytest.importorskip("torch")
    spec = ropekit.RopeSpec(16, style="interleaved")
    q = np.random.default_rng().standard_normal((2, 4, 2, 16)).astype(np.float32) + 0.1
    qj = jnp.asarray(q).astype(jnp.bfloat16)
    out = ropekit.apply_rope(qj, spec=spec, positions=3)
    assert out.dtype == jnp.bfloat16
    qt = torch.from_numpy(np.array(qj.astype(jnp.float32))).to(torch.bfloat16)
    want = ropekit.apply_rope(qt, spec=spec, positions=3)  # the bf16 kernel
    np.testing.assert_array_equal(np.asarray(out.astype(jnp.float32)), want.float().numpy())
    pos = np.broadcast_to(np.arange(4)[None] + 3, (2, 4))
    assert_close(np.asarray(out.astype(jnp.float32)), rope(np.asarray(qj.astype(jnp.float32)), pos,
                                                            ropekit.inv_freq(spec), "interleaved"), "bfloat16")
