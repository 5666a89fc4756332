#!/usr/bin/python3
"""PyTorch CPU eager peer for bench/cpu_bench.cpp: HF-style rotary on the same shapes.

q (B, 32, S, 128), k (B, 8, S, 128) as HF lays them out, cos/sin already gathered (B, S, 128) --
the rotary-embedding forward that builds them is not timed, which favours torch. Prints one line per
case with the median time, bytes/s (q+k read once and written once) and the ratio to a torch copy
of the same bytes with the same threads.

    /usr/bin/python3 bench/torch_cpu_peer.py [--quick]
"""
import statistics
import sys
import time

import torch


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rotate_every_two(x):
    return torch.stack((-x[..., 1::2], x[..., ::2]), dim=-1).flatten(-2)


def hf_apply(q, k, cos, sin, style):
    cos = cos.unsqueeze(1)
    sin = sin.unsqueeze(1)
    rot = rotate_half if style == "half" else rotate_every_two
    return q * cos + rot(q) * sin, k * cos + rot(k) * sin


def median_seconds(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def case(batch, seq, dtype, style, threads, repeats):
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    q = torch.randn(batch, 32, seq, 128, generator=g).to(dtype)
    k = torch.randn(batch, 8, seq, 128, generator=g).to(dtype)
    pos = torch.arange(seq, dtype=torch.float32) + (1000 if seq == 1 else 0)
    inv_freq = 1.0 / (500000.0 ** (torch.arange(0, 128, 2, dtype=torch.float32) / 128))
    freqs = torch.outer(pos, inv_freq)
    emb = torch.cat((freqs, freqs), -1) if style == "half" else freqs.repeat_interleave(2, -1)
    cos = emb.cos()[None].expand(batch, -1, -1).to(dtype)
    sin = emb.sin()[None].expand(batch, -1, -1).to(dtype)
    rope = median_seconds(lambda: hf_apply(q, k, cos, sin, style), repeats)
    copy = median_seconds(lambda: (q.clone(), k.clone()), repeats)
    nbytes = (q.numel() + k.numel()) * q.element_size()
    name = f"torch_eager/{str(dtype).replace('torch.', '')}/{style}/B:{batch}/S:{seq}/threads:{threads}"
    print(f"{name:55s} median_us={rope * 1e6:12.1f} bytes_per_second={2 * nbytes / rope / 1e9:7.2f}G/s "
          f"copy_us={copy * 1e6:10.1f} copy_ratio={copy / rope:6.3f}", flush=True)


def main():
    quick = "--quick" in sys.argv
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads available")
    for seq in ([4096] if quick else [4096, 16384]):
        for dtype in (torch.float32, torch.bfloat16):
            for style in ("half", "interleaved"):
                for threads in (1, 2):
                    case(1, seq, dtype, style, threads, 3 if seq > 4096 else 5)
    for batch in (1, 32):
        for dtype in (torch.float32, torch.bfloat16):
            case(batch, 1, dtype, "half", 1, 200)


if __name__ == "__main__":
    main()
