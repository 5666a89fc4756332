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


def test_misaligned_array_nothing_written():
    """numpy can view a buffer at any byte offset; ropekit reads elements as their type, so refuses."""
    raw = bytearray(2 + 4 * 2 * 4 * 16)
    q = np.frombuffer(raw, dtype=np.float32, offset=2).reshape(1, 4, 2, 16)
    assert not q.flags.aligned
    with pytest.raises(ValueError, match=r"q.data: expected an address aligned to 4 bytes"):
        ropekit.apply_rope(q, spec=SPEC, inplace=True)
    assert raw == bytearray(len(raw))


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


# --- integers out of range: a ValueError naming the argument and the range, not nanobind's signature dump ---

INT64_RANGE = r"expected an integer in \[-2\^63, 2\^63 - 1\] \(int64\), got "


@pytest.mark.parametrize("call, message", [
    (lambda: ropekit.RopeSpec(2 ** 70), "^head_dim: " + INT64_RANGE + "1180591620717411303424$"),
    (lambda: ropekit.RopeSpec(16, rotary_dim=-2 ** 64), "^rotary_dim: " + INT64_RANGE + "-18446744073709551616$"),
    (lambda: ropekit.DynamicNtk(2.0, original_max=2 ** 63), "^original_max: " + INT64_RANGE),
    (lambda: ropekit.Yarn(2.0, original_max=2 ** 63), "^original_max: " + INT64_RANGE),
    (lambda: ropekit.Llama3(8.0, original_max=2 ** 63), "^original_max: " + INT64_RANGE),
    (lambda: ropekit.LongRope([1.0], [1.0], original_max=2 ** 63), "^original_max: " + INT64_RANGE),
    (lambda: ropekit.RopeTable(SPEC, 2 ** 64), "^positions: " + INT64_RANGE),
    (lambda: ropekit.RopeTable(SPEC, seq_len=2 ** 64), "^seq_len: " + INT64_RANGE),
    (lambda: ropekit.RopeTable(SPEC).grown(2 ** 64), "^n: " + INT64_RANGE),
    (lambda: ropekit.RopeTable(SPEC).for_seq_len(2 ** 64), "^seq_len: " + INT64_RANGE),
    (lambda: ropekit.inv_freq(SPEC, 2 ** 64), "^seq_len: " + INT64_RANGE),
    (lambda: ropekit.default_inv_freq(2 ** 64), "^dim: " + INT64_RANGE),
    (lambda: ropekit.linear_ramp_mask(0.0, 1.0, 2 ** 64), "^n: " + INT64_RANGE),
    (lambda: ropekit._C.frequency_seq_len(SPEC, 2 ** 64), "^seq_len: " + INT64_RANGE),
    (lambda: ropekit.apply_rope(rnd(1, 2, 2, 16), spec=SPEC, num_threads=2 ** 31),
     r"^num_threads: expected an integer in \[0, 2147483647\], got 2147483648$"),
    (lambda: ropekit.apply_rope(rnd(1, 2, 2, 16), spec=SPEC, num_threads=-1),
     r"^num_threads: expected an integer in \[0, 2147483647\], got -1$"),
    (lambda: ropekit._C.apply(rnd(1, 2, 2, 16), spec=SPEC, start=2 ** 63), "^start: " + INT64_RANGE),
])
def test_out_of_range_integers_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_non_integers_name_the_argument():
    with pytest.raises(TypeError, match="^head_dim: expected an integer, got float$"):
        ropekit.RopeSpec(16.0)
    with pytest.raises(TypeError, match="^head_dim: expected an integer, got bool$"):
        ropekit.RopeSpec(True)
    with pytest.raises(TypeError, match="^num_threads: expected an integer, got float$"):
        ropekit.apply_rope(rnd(1, 2, 2, 16), spec=SPEC, num_threads=1.5)
    spec = ropekit.RopeSpec(np.int64(16), rotary_dim=np.int32(8))  # __index__ integers are fine
    assert spec.head_dim == 16 and spec.rotary_dim == 8
    scaling = ropekit.DynamicNtk(2.0, original_max=64)
    scaling.original_max = 128
    assert scaling.original_max == 128
    with pytest.raises(ValueError, match="^original_max: " + INT64_RANGE):
        scaling.original_max = 2 ** 63
    assert scaling.original_max == 128


def test_error_messages_stay_short():
    # Before: a 2M-element argument printed in full. Now at most a few elements, or only its type.
    big = list(range(2_000_000))
    for call in (lambda: ropekit.RopeSpec(big), lambda: ropekit.RopeTable(SPEC, big),
                 lambda: ropekit.apply_rope(rnd(1, 2, 2, 16), spec=SPEC, num_threads=big),
                 lambda: ropekit.RopeSpec(10 ** 5000)):
        with pytest.raises((TypeError, ValueError)) as e:
            call()
        assert len(str(e.value)) < 200, str(e.value)[:300]
    with pytest.raises(ValueError, match="^head_dim: expected an integer in .*, got an int of 16610 bits$"):
        ropekit.RopeSpec(10 ** 5000)
    with pytest.raises(TypeError, match=r"^positions: .*list of 2000001 elements \[0\.5, 0\.5, 0\.5, 0\.5, \.\.\.\]"):
        ropekit.apply_rope(rnd(1, 2, 2, 16), spec=SPEC, positions=[0.5] * 2_000_000 + [[1]])


# --- outputs the library allocates ------------------------------------------------------------------------

def test_broadcast_input_gets_a_proper_output():
    # Before: np.empty_like of a stride-0 view had a strided last axis, and the call failed with an
    # error about q_out, which the caller never passed.
    from reference import assert_close, rope

    base = rnd(2, 1, 3, 16)
    q = np.broadcast_to(base, (2, 5, 3, 16))
    out = ropekit.apply_rope(q, spec=SPEC, positions=2)
    assert out.flags.c_contiguous
    assert_close(out, rope(np.ascontiguousarray(q), np.arange(5)[None] + 2, ropekit.inv_freq(SPEC)))
    t = torch.from_numpy(base).expand(2, 5, 3, 16)
    assert_close(ropekit.apply_rope(t, spec=SPEC, positions=2).numpy(), out)
    strided = torch.from_numpy(rnd(2, 5, 16, 3)).transpose(-1, -2)  # last axis not contiguous
    with pytest.raises(ValueError, match=r"^ropekit: q.strides\[-1\]"):  # named q, not q_out
        ropekit.apply_rope(strided, spec=SPEC)
