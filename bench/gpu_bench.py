#!/usr/bin/env python3
"""GPU benchmark of RoPE peers in PyTorch and of ropekit's Python call, on the shapes of
bench/gpu_bench.cu (ropekit's own C++ benchmark): bf16, q 32 heads / k 8 heads x 128, half and
interleaved styles, forward (backward too without --quick: the VJP is the rotation by -theta),
prefill B8 S4096, B1 S8192 (B1 S65536 without --quick) and decode B128 (also with device-resident
per-sequence offsets) and B1 (without --quick); decode is also replayed from a CUDA graph.

Peers, each when importable (--peers picks): PyTorch eager HF-style rotation (out of place, as HF
runs it), torch.compile of it, Liger-Kernel's Triton rope (in place, half style), flash-attn's Triton
rotary (in place), and ropekit's own Python API (in place, from an installed or PYTHONPATH build).
Times are medians of CUDA-event measurements; a device-to-device copy of the same bytes is measured
in the same run. Minimal bytes = read + write of q and k once; peers that also read cos/sin tables
or allocate outputs are charged only the minimal bytes, so their GB/s is comparable.

Prints, per measurement, "RESULT impl case median_us GB/s ratio_to_copy", and for ropekit's Python
call in decode "PYCALL impl case us_per_call" (host wall-clock per call: what a Python decode loop
pays); scripts/gpu_run.sh reads them.
"""
import argparse
import statistics
import sys
import time

try:
    import torch
except ImportError:
    print("PyTorch not importable: python GPU benchmark skipped")
    sys.exit(0)

HQ, HK, D = 32, 8, 128
# name, batch, seq, start (decode: the new token's position), device offsets, in --quick
SHAPES = [("prefill_B8_S4096", 8, 4096, 0, False, True), ("prefill_B1_S8192", 1, 8192, 0, False, True),
          ("prefill_B1_S65536", 1, 65536, 0, False, False), ("decode_B128_S1", 128, 1, 4095, False, True),
          ("decode_B128_offsets", 128, 1, 0, True, True), ("decode_B1_S1", 1, 1, 4095, False, False)]
ALL_PEERS = ("torch_eager", "torch_compile", "liger", "flash_attn_triton", "ropekit")


def time_us(fn, reps, calls):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    samples = []
    for _ in range(reps):
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        samples.append(1000.0 * start.elapsed_time(end) / calls)
    return statistics.median(samples)


def host_us(fn, reps, calls):
    """Wall-clock microseconds per call of back-to-back calls (the GPU drained between samples)."""
    samples = []
    for _ in range(reps):
        torch.cuda.synchronize()
        begin = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append(1e6 * (time.perf_counter() - begin) / calls)
    torch.cuda.synchronize()
    return statistics.median(samples)


def graph_us(fn, reps, calls_in_graph=100):
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls_in_graph):
            fn()
    return time_us(graph.replay, reps, 2) / calls_in_graph


def report(impl, name, us, nbytes, copy_us):
    gbs = nbytes / (us * 1e-6) / 1e9
    print(f"{impl:24s} {name:36s} {us:10.2f} us {gbs:9.1f} GB/s  copy {copy_us:8.2f} us  ratio {copy_us / us:.3f}")
    print(f"RESULT {impl} {name} {us:.3f} {gbs:.1f} {copy_us / us:.3f}", flush=True)


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rotate_every_two(x):
    x1, x2 = x[..., ::2], x[..., 1::2]
    return torch.stack((-x2, x1), dim=-1).flatten(-2)


def hf_rope(q, k, cos, sin, half):
    rot = rotate_half if half else rotate_every_two
    return q * cos + rot(q) * sin, k * cos + rot(k) * sin


def cos_sin(positions, half, sign, dtype):
    """cos/sin per token (T, D) for the HF form, and per pair (T, D/2) for flash-attn."""
    inv_freq = 1.0 / (500000.0 ** (torch.arange(0, D, 2, device="cuda", dtype=torch.float32) / D))
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), -1) if half else freqs.repeat_interleave(2, -1)
    return emb.cos().to(dtype), (sign * emb.sin()).to(dtype), freqs.cos(), sign * freqs.sin()


def load_peers(wanted):
    peers = {}
    if "torch_compile" in wanted:
        try:
            from torch import _dynamo
            for limit in ("cache_size_limit", "recompile_limit"):
                if hasattr(_dynamo.config, limit):
                    setattr(_dynamo.config, limit, 64)
            peers["torch_compile"] = torch.compile(hf_rope, dynamic=False)
        except Exception as e:  # noqa: BLE001
            print(f"torch.compile unavailable: {e}")
    if "liger" in wanted:
        try:
            from liger_kernel.ops.rope import LigerRopeFunction
            peers["liger"] = LigerRopeFunction
        except Exception as e:  # noqa: BLE001
            print(f"liger-kernel not importable ({type(e).__name__}: {e}): skipped")
    if "flash_attn_triton" in wanted:
        try:
            from flash_attn.layers.rotary import apply_rotary_emb
            peers["flash_attn_triton"] = apply_rotary_emb
        except Exception as e:  # noqa: BLE001
            print(f"flash-attn not importable ({type(e).__name__}: {e}): skipped")
    if "ropekit" in wanted:
        try:
            import ropekit
            if not getattr(ropekit._C, "has_cuda", False):
                raise ImportError("ropekit built without CUDA")
            peers["ropekit"] = ropekit
        except Exception as e:  # noqa: BLE001
            print(f"ropekit (Python) not importable ({type(e).__name__}: {e}): skipped")
    return peers


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--peers", default=",".join(ALL_PEERS), help="comma-separated subset of " + ",".join(ALL_PEERS))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: python GPU benchmark skipped")
        return
    wanted = set(args.peers.split(","))
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    peers = load_peers(wanted)
    reps = 7 if args.quick else 21

    for name, B, S, start, device_offsets, in_quick in SHAPES:
        if args.quick and not in_quick:
            continue
        decode = S == 1
        calls = (200 if args.quick else 1000) if decode else (5 if B * S >= 32768 else 20)
        q = torch.randn(B, S, HQ, D, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(B, S, HK, D, device="cuda", dtype=torch.bfloat16)
        q_copy, k_copy = torch.empty_like(q), torch.empty_like(k)
        nbytes = 2.0 * (q.numel() + k.numel()) * q.element_size()

        def copy():
            q_copy.copy_(q)
            k_copy.copy_(k)
        copy_us = time_us(copy, reps, calls)
        copy_graph_us = graph_us(copy, reps) if decode else None
        if device_offsets:
            offsets = 3000 + (torch.arange(B, device="cuda", dtype=torch.int64) * 37) % 1096
            positions = offsets  # S == 1: one token per sequence at its offset
        else:
            offsets = None
            positions = torch.arange(start, start + S, device="cuda")
        for half in (True, False):
            for direction, sign in (("fwd", 1.0), ("bwd", -1.0)):
                if args.quick and direction == "bwd":
                    continue
                case = f"{name}_{'half' if half else 'inter'}_{direction}"
                cos, sin, cos_h, sin_h = cos_sin(positions, half, sign, torch.bfloat16)
                if device_offsets:  # one row per sequence: (B, 1, 1, D)
                    cos4, sin4 = cos[:, None, None, :], sin[:, None, None, :]
                else:  # broadcast over (B, S, H, D)
                    cos4, sin4 = cos[None, :, None, :], sin[None, :, None, :]
                runs = [("torch_eager", lambda: hf_rope(q, k, cos4, sin4, half))]
                if "torch_compile" in peers:
                    runs.append(("torch_compile", lambda: peers["torch_compile"](q, k, cos4, sin4, half)))
                if "liger" in peers and half and not device_offsets:
                    # Liger expects (B, H, S, D) and (1, S, D) tables; rotates in place.
                    qt, kt = q.transpose(1, 2), k.transpose(1, 2)
                    runs.append(("liger", lambda: peers["liger"].apply(qt, kt, cos[None], sin[None])))
                if "flash_attn_triton" in peers:
                    cf, sf = cos_h.to(torch.bfloat16), sin_h.to(torch.bfloat16)
                    fa = peers["flash_attn_triton"]
                    if device_offsets:
                        # flash-attn's seqlen_offsets: one start per sequence, tables cover the positions.
                        cf_all, sf_all = (t.to(torch.bfloat16) for t in cos_sin(torch.arange(8192, device="cuda"), half, sign, torch.bfloat16)[2:])
                        runs.append(("flash_attn_triton", lambda: (
                            fa(q, cf_all, sf_all, interleaved=not half, inplace=True, seqlen_offsets=offsets),
                            fa(k, cf_all, sf_all, interleaved=not half, inplace=True, seqlen_offsets=offsets))))
                    else:
                        runs.append(("flash_attn_triton", lambda: (
                            fa(q, cf, sf, interleaved=not half, inplace=True),
                            fa(k, cf, sf, interleaved=not half, inplace=True))))
                if "ropekit" in peers:
                    rk = peers["ropekit"]
                    spec = rk.RopeSpec(D, base=500000.0, style=rk.Style.half if half else rk.Style.interleaved)
                    table = rk.RopeTable(spec, 8192)
                    kwargs = dict(table=table, inplace=True, backward=direction == "bwd")
                    if device_offsets:
                        kwargs["offsets"] = offsets
                    else:
                        kwargs["positions"] = start
                    runs.append(("ropekit_py", lambda kw=kwargs: rk.apply_rope(q, k, **kw)))
                for impl, fn in runs:
                    try:
                        report(impl, case, time_us(fn, reps, calls), nbytes, copy_us)
                        if decode:
                            report(impl + "_graph", case, graph_us(fn, reps), nbytes, copy_graph_us)
                            if impl == "ropekit_py":
                                us = host_us(fn, reps, calls)
                                print(f"{impl:24s} {case:36s} {us:10.2f} us per call from Python (host)")
                                print(f"PYCALL {impl} {case} {us:.3f}", flush=True)
                    except Exception as e:  # noqa: BLE001
                        print(f"{impl} {case}: failed ({type(e).__name__}: {e})")
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
