"""Bad input: a clear Python exception naming the argument, and nothing written."""
import numpy as np
import pytest
import torch

import ropekit

SPEC = ropekit.RopeSpec(16)


def rnd(*shape):
    return np.random.default_rng().standard_normal(shape).astype(np.float32) + 0.1


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.complex64, np.bool_])
def test_wrong_dtype_is_type_error(dtype):
    q = np.ones((1, 4, 2, 16), dtype=dtype)
    with pytest.raises(TypeError, match="q: expected dtype float32, float16, bfloat16 or float64"):
        ropekit.apply_rope(q, spec=SPEC)


def test_wrong_dtype_k_and_torch_complex():
    with pytest.raises(TypeError, match="k: expected dtype"):
        ropekit.apply_rope(rnd(1, 4, 2, 16), np.ones((1, 4, 2, 16), np.int64), spec=SPEC)
    with pytest.raises(TypeError, match="q: expected dtype"):
        ropekit.apply_rope(torch.ones(1, 4, 2, 16, dtype=torch.complex64), spec=SPEC)


@pytest.mark.parametrize("shape", [(16,), (4, 16), (1, 1, 1, 1, 16)])
def test_wrong_rank(shape):
    with pytest.raises(ValueError, match="q.rank"):
        ropekit.apply_rope(np.ones(shape, np.float32), spec=SPEC)


def test_wrong_head_dim():
    with pytest.raises(ValueError, match=r"q.shape\[-1\]"):
        ropekit.apply_rope(rnd(1, 4, 2, 8), spec=SPEC)


def test_non_contiguous_last_dim_nothing_written():
    base = torch.from_numpy(rnd(1, 4, 2, 32))
    q = base[..., ::2]  # last stride 2
    before = base.clone()
    with pytest.raises(ValueError, match=r"q.strides\[-1\]"):
        ropekit.apply_rope(q, spec=SPEC, inplace=True)
    assert torch.equal(base, before)


def test_positions_out_of_range_nothing_written():
    q = torch.from_numpy(rnd(2, 3, 2, 16))
    k = torch.from_numpy(rnd(2, 3, 1, 16))
    q0, k0 = q.clone(), k.clone()
    with pytest.raises(ValueError, match=r"positions.ids\[4\]"):
        ropekit.apply_rope(q, k, spec=SPEC, positions=torch.tensor([0, 1, 2, 3, -1, 5]), inplace=True)
    with pytest.raises(ValueError, match="positions.ids.size"):
        ropekit.apply_rope(q, k, spec=SPEC, positions=torch.tensor([0, 1, 2]), inplace=True)
    with pytest.raises(ValueError, match=r"positions.offsets\[1\]"):
        ropekit.apply_rope(q, k, spec=SPEC, offsets=torch.tensor([0, -3]), inplace=True)
    with pytest.raises(ValueError, match="positions.start"):
        ropekit.apply_rope(q, k, spec=SPEC, positions=-2, inplace=True)
    assert torch.equal(q, q0) and torch.equal(k, k0)
    # Positions past a table's rows are computed in the kernel; past 2^63 - 2 they are an error.
    table = ropekit.RopeTable(SPEC, 2)
    out = torch.zeros_like(q)
    with pytest.raises(ValueError, match="positions.start"):
        ropekit._C.apply(q, None, out, None, table=table, start=(1 << 63) - 1 - q.shape[1] + 1)
    assert torch.count_nonzero(out) == 0
    ropekit._C.apply(q, None, out, None, table=table, start=1000000000000000)
    assert torch.count_nonzero(out) > 0 and table.size == 2


def test_bad_cu_seqlens_and_index_dtype():
    q = rnd(5, 2, 16)
    out = np.zeros_like(q)
    with pytest.raises(ValueError, match=r"cu_seqlens\[2\]"):
        ropekit.apply_rope(q, spec=SPEC, cu_seqlens=np.array([0, 3, 4]), q_out=out)
    with pytest.raises(ValueError, match=r"cu_seqlens\[2\]"):
        ropekit.apply_rope(q, spec=SPEC, cu_seqlens=np.array([0, 3, 1, 5]), q_out=out)
    with pytest.raises(TypeError, match=r"positions: expected an int or an integer array \(int32 or int64\), got dtype float64"):
        ropekit.apply_rope(rnd(1, 2, 2, 16), spec=SPEC, positions=np.array([[0.5, 1.0]]))
    with pytest.raises(TypeError, match="ids: expected dtype int32 or int64"):
        ropekit._C.apply(rnd(1, 2, 2, 16), spec=SPEC, ids=np.array([[0.5, 1.0]]))
    assert not out.any()


def test_mismatched_k_and_outputs():
    q = rnd(1, 4, 2, 16)
    with pytest.raises(ValueError, match="k.shape"):
        ropekit.apply_rope(q, rnd(1, 5, 2, 16), spec=SPEC)
    with pytest.raises(ValueError, match="q_out.shape"):
        ropekit.apply_rope(q, spec=SPEC, q_out=np.zeros((1, 4, 3, 16), np.float32))
    with pytest.raises(ValueError, match="q_out.dtype"):
        ropekit.apply_rope(q, spec=SPEC, q_out=np.zeros((1, 4, 2, 16), np.float16))
    with pytest.raises(TypeError, match="q: expected a (writable )?DLPack array"):
        ropekit._C.apply([[1.0]], spec=SPEC)
    with pytest.raises(ValueError, match="exactly one of"):
        ropekit.apply_rope(q)


def test_read_only_array_cannot_be_rotated_in_place():
    q = rnd(1, 4, 2, 16)
    q.setflags(write=False)
    with pytest.raises(TypeError, match="q: expected a writable"):
        ropekit.apply_rope(q, spec=SPEC, inplace=True)
    out = ropekit.apply_rope(q, spec=SPEC)  # out of place reads it fine
    assert out.shape == q.shape
