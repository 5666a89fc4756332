"""Aliasing between q, k and their outputs through _C.apply: every written array is disjoint from
every other read or written one, except an output that is exactly its own input (in place).
Before the fix, q rotated in place while an overlapping k was read into a separate k_out (and the
mirror case) was accepted and k read values q had already rotated."""
import numpy as np
import pytest

import ropekit

SPEC = ropekit.RopeSpec(16)


def arena():
    rng = np.random.default_rng(3)
    return rng.standard_normal(4096).astype(np.float32)


def test_k_overlapping_q_in_place_is_refused():
    mem = arena()
    before = mem.copy()
    q = mem[: 2 * 4 * 3 * 16].reshape(2, 4, 3, 16)
    k = mem[2 * 4 * 3 * 16 - 16 : 2 * 4 * 3 * 16 - 16 + 2 * 4 * 2 * 16].reshape(2, 4, 2, 16)
    k_out = np.zeros_like(k)
    with pytest.raises(ValueError, match="k: expected memory disjoint from q"):
        ropekit._C.apply(q, k, None, k_out, spec=SPEC)
    np.testing.assert_array_equal(mem, before)
    assert not k_out.any()


def test_q_overlapping_k_in_place_is_refused():
    mem = arena()
    before = mem.copy()
    k = mem[: 2 * 4 * 2 * 16].reshape(2, 4, 2, 16)
    q = mem[2 * 4 * 2 * 16 - 16 : 2 * 4 * 2 * 16 - 16 + 2 * 4 * 3 * 16].reshape(2, 4, 3, 16)
    q_out = np.zeros_like(q)
    with pytest.raises(ValueError, match="q: expected memory disjoint from k"):
        ropekit._C.apply(q, k, q_out, None, spec=SPEC)
    np.testing.assert_array_equal(mem, before)
    assert not q_out.any()


def test_disjoint_operands_still_work():
    mem = arena()
    q = mem[:384].reshape(2, 4, 3, 16)
    k = mem[384:640].reshape(2, 4, 2, 16)
    k_out = np.zeros_like(k)
    ropekit._C.apply(q, k, None, k_out, spec=SPEC)
    want = ropekit.apply_rope(mem[384:640].reshape(2, 4, 2, 16).copy(), spec=SPEC)
    np.testing.assert_array_equal(k_out, want)
