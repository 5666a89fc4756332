"""Positions are integers at every entry point. Before the fix torch inputs truncated floats
(positions=5.7 rotated as 5, offsets=[1.9] as 1) and positions=True rotated as 1; now each is a
TypeError naming the argument, with nothing written."""
import numpy as np
import pytest
import torch

import ropekit
import ropekit.torch as rt
from reference import assert_close, rope

SPEC = ropekit.RopeSpec(16)
B, S, H, D = 2, 3, 2, 16

BAD_POSITIONS = {
    "float": 5.7,
    "integral_float": 5.0,
    "bool": True,
    "numpy_float_scalar": np.float32(2.0),
    "numpy_bool_scalar": np.bool_(True),
    "float_list": [[1.9, 2.0, 3.0], [0.0, 1.0, 2.0]],
    "bool_list": [[True, False, True], [True, True, False]],
    "numpy_float_array": np.zeros((B, S), np.float32),
    "torch_float_scalar": torch.tensor(5.7),
    "torch_bool_scalar": torch.tensor(True),
    "torch_float_tensor": torch.zeros(B, S, dtype=torch.float64),
    "torch_bool_tensor": torch.zeros(B, S, dtype=torch.bool),
    "string": "3",
}
BAD_OFFSETS = {
    "float_list": [1.9, 0.0],
    "bool_list": [True, False],
    "numpy_float": np.array([1.0, 2.0]),
    "torch_float": torch.tensor([1.9, 0.0]),
    "torch_bool": torch.tensor([True, False]),
}


def numpy_call(positions=None, offsets=None):
    q = np.ones((B, S, H, D), np.float32)
    return ropekit.apply_rope(q, spec=SPEC, positions=positions, offsets=offsets, inplace=True), q


def torch_functional_call(positions=None, offsets=None):
    q = torch.ones(B, S, H, D)
    return ropekit.apply_rope(q, spec=SPEC, positions=positions, offsets=offsets, inplace=True), q


def torch_functional_grad_call(positions=None, offsets=None):
    q = torch.ones(B, S, H, D, requires_grad=True)
    return ropekit.apply_rope(q, spec=SPEC, positions=positions, offsets=offsets), q


def rt_call(positions=None, offsets=None):
    q = torch.ones(B, S, H, D, requires_grad=True)
    return rt.apply_rope(q, spec=SPEC, positions=positions, offsets=offsets), q


def module_call(positions=None, offsets=None):
    q = torch.ones(B, S, H, D)
    return rt.RotaryEmbedding(SPEC, 8)(q, positions=positions, offsets=offsets), q


DYNAMIC = ropekit.RopeSpec(D, scaling=ropekit.DynamicNtk(2.0, original_max=4))


def module_dynamic_call(positions=None, offsets=None):
    q = torch.ones(B, S, H, D)
    return rt.RotaryEmbedding(DYNAMIC)(q, positions=positions, offsets=offsets), q


def compiled_call(positions=None, offsets=None, fullgraph=False):
    # fullgraph=False: dynamo hands the TypeError to eager, which raises it (fullgraph would wrap it).
    # Each call compiles afresh (past dynamo's recompile limit it would run the frames eagerly).
    torch._dynamo.reset()
    q = torch.ones(B, S, H, D)
    f = torch.compile(lambda q: rt.apply_rope(q, spec=SPEC, positions=positions, offsets=offsets),
                      fullgraph=fullgraph, backend="aot_eager")
    return f(q), q


def compiled_fullgraph_call(positions=None, offsets=None):
    return compiled_call(positions, offsets, fullgraph=True)


ENTRY_POINTS = {
    "numpy": numpy_call,
    "torch_functional": torch_functional_call,
    "torch_functional_requires_grad": torch_functional_grad_call,
    "ropekit.torch.apply_rope": rt_call,
    "RotaryEmbedding": module_call,
    "RotaryEmbedding_dynamic": module_dynamic_call,
}
EAGER = list(ENTRY_POINTS)
ENTRY_POINTS["torch.compile"] = compiled_call
ENTRY_POINTS["torch.compile_fullgraph"] = compiled_fullgraph_call
# Each compiled call compiles afresh: a few cases cover the compiled path.
COMPILED_BAD = ["float", "bool", "torch_float_tensor", "float_list"]


@pytest.mark.parametrize("entry, bad", [(e, b) for e in EAGER for b in BAD_POSITIONS] +
                         [("torch.compile", b) for b in COMPILED_BAD])
def test_non_integer_positions_are_type_errors(entry, bad):
    with pytest.raises(TypeError, match="^positions: expected an int or an integer array"):
        ENTRY_POINTS[entry](positions=BAD_POSITIONS[bad])


@pytest.mark.parametrize("entry, bad", [(e, b) for e in EAGER for b in BAD_OFFSETS] +
                         [("torch.compile", "torch_float")])
def test_non_integer_offsets_are_type_errors(entry, bad):
    with pytest.raises(TypeError, match="^offsets: expected an int or an integer array"):
        ENTRY_POINTS[entry](offsets=BAD_OFFSETS[bad])


def test_nothing_written_and_cu_seqlens():
    q = torch.ones(B, S, H, D)
    with pytest.raises(TypeError, match="positions"):
        ropekit.apply_rope(q, spec=SPEC, positions=5.7, inplace=True)
    with pytest.raises(TypeError, match="offsets"):
        ropekit.apply_rope(q, spec=SPEC, offsets=[1.9, 0.0], inplace=True)
    assert torch.equal(q, torch.ones(B, S, H, D))
    packed = torch.ones(5, H, D)
    for cu in ([0.0, 2.0, 5.0], torch.tensor([0.0, 2.0, 5.0]), np.array([0, 2, 5], np.float32)):
        with pytest.raises(TypeError, match="^cu_seqlens: expected"):
            ropekit.apply_rope(packed, spec=SPEC, cu_seqlens=cu, inplace=True)
        with pytest.raises(TypeError, match="^cu_seqlens: expected"):
            rt.apply_rope(packed, spec=SPEC, cu_seqlens=cu)
    assert torch.equal(packed, torch.ones(5, H, D))


def test_custom_op_start_must_be_an_int():
    handle = rt.register_table(ropekit.RopeTable(SPEC, 8))
    q, k = torch.ones(B, S, H, D), torch.ones(B, S, 1, D)
    for bad in (5.7, 2.0, True):
        with pytest.raises(TypeError, match="^start: expected an int"):
            rt.rope_op(q, k, handle, bad)


@pytest.mark.parametrize("entry", EAGER + ["torch.compile_fullgraph"])
def test_integer_forms_still_work(entry):
    # Python int, numpy and 0-d torch integers as a start; int16 / uint8 arrays and lists as ids.
    q = np.ones((B, S, H, D), np.float32)

    def check(kwargs, pos):
        out, _ = ENTRY_POINTS[entry](**kwargs)
        out = out.detach().numpy() if isinstance(out, torch.Tensor) else out
        # the dynamic module takes the frequencies for the call's largest position + 1
        f = ropekit.inv_freq(DYNAMIC, int(pos.max()) + 1) if entry == "RotaryEmbedding_dynamic" else ropekit.inv_freq(SPEC)
        assert_close(out, rope(q, pos, f))

    grid = np.arange(S)[None].repeat(B, 0)
    for start in (3, np.int64(3), np.int32(3), torch.tensor(3)):
        if entry.startswith("torch.compile") and not isinstance(start, int):
            continue  # dynamo breaks the graph on a 0-d tensor's .item() and on numpy scalars
        check(dict(positions=start), grid + 3)
    ids = np.array([[4, 0, 9], [1, 1, 2]])
    for form in (ids.tolist(), ids.astype(np.int16), torch.from_numpy(ids).to(torch.uint8)):
        check(dict(positions=form), ids)
    check(dict(offsets=[5, 0]), np.array([[5], [0]]) + grid)


def test_long_float_list_message_is_short():
    q = np.ones((1, 4, 2, 16), np.float32)
    with pytest.raises(TypeError) as e:
        ropekit.apply_rope(q, spec=SPEC, positions=[0.5] * 2_000_000)
    assert str(e.value).startswith("positions: expected") and len(str(e.value)) < 200
    with pytest.raises(TypeError) as e:
        rt.apply_rope(torch.from_numpy(q), spec=SPEC, positions=[[0, 1], [2]] * 1_000_000)
    assert str(e.value).startswith("positions: expected") and len(str(e.value)) < 300


def test_out_of_range_integer_positions():
    q = np.ones((1, 4, 2, 16), np.float32)
    for call in (lambda p: ropekit.apply_rope(q, spec=SPEC, positions=p),
                 lambda p: rt.apply_rope(torch.from_numpy(q), spec=SPEC, positions=p)):
        with pytest.raises(ValueError, match=r"^positions: expected an integer in \[0, 2\^63 - 2\], got 1180591620717411303424$"):
            call(2 ** 70)
        with pytest.raises(ValueError, match=r"positions.start: expected >= 0"):
            call(-1)
        with pytest.raises(ValueError, match=r"^positions: expected an integer in \[0, 2\^63 - 2\], got an int of 16610 bits$"):
            call(10 ** 5000)
