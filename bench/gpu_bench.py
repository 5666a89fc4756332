#!/usr/bin/env python3
"""GPU benchmark of RoPE peers in PyTorch, on the same shapes as bench/gpu_bench.cu (ropekit's own
C++ benchmark): bf16, q 32 heads / k 8 heads x 128, both styles, forward and backward (the VJP is
the rotation by -theta, timed as such), prefill B8 S4096, B1 S8192, B1 S65536 and decode B128 S1,
B1 S1 (decode also replayed from a CUDA graph).

Peers, each when importable: PyTorch eager HF-style rotation, torch.compile of it, Liger-Kernel's
Triton rope, flash-attn's Triton rotary. Times are medians of CUDA-event measurements; a
device-to-device copy of the same bytes is measured in the same run. Prints one
"RESULT impl case median_us GB/s ratio_to_copy" line per measurement (scripts/gpu_check.sh reads them).
Minimal bytes = read + write of q and k once; peers that also read cos/sin tables or allocate
outputs (out of place) are charged only the minimal bytes, so their GB/s is comparable.
"""
import argparse
import statistics
import sys

try:
    import torch
except ImportError:
    print("PyTorch not importable: python GPU benchmark skipped")
    sys.exit(0)

HQ, HK, D = 32, 8, 128
SHAPES = [("prefill_B8_S4096", 8, 4096, 0), ("prefill_B1_S8192", 1, 8192, 0), ("prefill_B1_S65536", 1, 65536, 0),
          ("decode_B128_S1", 128, 1, 4095), ("decode_B1_S1", 1, 1, 4095)]


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
    print(f"{impl:34s} {name:26s} {us:10.2f} us {gbs:9.1f} GB/s  copy {copy_us:8.2f} us  ratio {copy_us / us:.2f}")
    print(f"RESULT {impl} {name} {us:.3f} {gbs:.1f} {copy_us / us:.3f}")


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
    inv_freq = 1.0 / (500000.0 ** (torch.arange(0, D, 2, device="cuda", dtype=torch.float32) / D))
    freqs = positions.float()[:, None] * inv_freq[None, :]            # (S, D/2)
    emb = torch.cat((freqs, freqs), -1) if half else freqs.repeat_interleave(2, -1)
    return emb.cos().to(dtype), (sign * emb.sin()).to(dtype), freqs.cos(), sign * freqs.sin()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: python GPU benchmark skipped")
        return
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    compiled = None
    try:
        # One specialisation per shape and style (10): keep dynamo from falling back to eager.
        from torch import _dynamo
        for limit in ("cache_size_limit", "recompile_limit"):
            if hasattr(_dynamo.config, limit):
                setattr(_dynamo.config, limit, 64)
        compiled = torch.compile(hf_rope, dynamic=False)
    except Exception as e:  # noqa: BLE001
        print(f"torch.compile unavailable: {e}")
    try:
        from liger_kernel.ops.rope import LigerRopeFunction
    except Exception:  # noqa: BLE001
        LigerRopeFunction = None
        print("liger-kernel not importable: skipped")
    try:
        from flash_attn.layers.rotary import apply_rotary_emb
    except Exception:  # noqa: BLE001
        apply_rotary_emb = None
        print("flash-attn not importable: skipped")

    for name, B, S, start in SHAPES:
        reps = 5 if args.quick else 21
        decode = S == 1
        calls = (100 if args.quick else 1000) if decode else (5 if B * S >= 32768 else 20)
        q = torch.randn(B, S, HQ, D, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(B, S, HK, D, device="cuda", dtype=torch.bfloat16)
        q_copy, k_copy = torch.empty_like(q), torch.empty_like(k)
        nbytes = 2.0 * (q.numel() + k.numel()) * q.element_size()

        def copy():
            q_copy.copy_(q)
            k_copy.copy_(k)
        copy_us = time_us(copy, reps, calls)
        copy_graph_us = graph_us(copy, reps) if decode else None
        positions = torch.arange(start, start + S, device="cuda")
        for half in (True, False):
            for direction, sign in (("fwd", 1.0), ("bwd", -1.0)):
                case = f"{name}_{'half' if half else 'inter'}_{direction}"
                cos, sin, cos_h, sin_h = cos_sin(positions, half, sign, torch.bfloat16)
                cos4, sin4 = cos[None, :, None, :], sin[None, :, None, :]   # broadcast over (B, S, H, D)
                peers = [("torch_eager", lambda: hf_rope(q, k, cos4, sin4, half))]
                if compiled is not None:
                    peers.append(("torch_compile", lambda: compiled(q, k, cos4, sin4, half)))
                if LigerRopeFunction is not None and half:
                    # Liger expects (B, H, S, D) and (1, S, D) tables; rotates in place.
                    qt, kt = q.transpose(1, 2), k.transpose(1, 2)
                    peers.append(("liger", lambda: LigerRopeFunction.apply(qt, kt, cos[None], sin[None])))
                if apply_rotary_emb is not None:
                    cf, sf = cos_h.to(torch.bfloat16), sin_h.to(torch.bfloat16)
                    peers.append(("flash_attn_triton", lambda: (
                        apply_rotary_emb(q, cf, sf, interleaved=not half, inplace=True),
                        apply_rotary_emb(k, cf, sf, interleaved=not half, inplace=True))))
                for impl, fn in peers:
                    try:
                        report(impl, case, time_us(fn, reps, calls), nbytes, copy_us)
                        if decode:
                            report(impl + "_graph", case, graph_us(fn, reps), nbytes, copy_graph_us)
                    except Exception as e:  # noqa: BLE001
                        print(f"{impl} {case}: failed ({type(e).__name__}: {e})")
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
