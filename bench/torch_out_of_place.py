"""Out of place through ropekit.torch.apply_rope against clone() of the same tensors (the memory
limit of out-of-place work), measured alternately; Llama-3-8B heads, 2 threads. Medians of 8."""
import torch, time, statistics, ropekit, ropekit.torch as rt
torch.set_num_threads(2)
spec = ropekit.RopeSpec(head_dim=128, base=500000.0)
table = ropekit.RopeTable(spec, 16384)
for S in (4096, 16384):
    for dtype in (torch.float32, torch.bfloat16):
        q = torch.randn(1, S, 32, 128).to(dtype); k = torch.randn(1, S, 8, 128).to(dtype)
        rope_t, clone_t = [], []
        for i in range(9):  # interleaved: rotation, then the clone of the same tensors
            t0 = time.perf_counter(); rt.apply_rope(q, k, table=table); t1 = time.perf_counter()
            q.clone(); k.clone(); t2 = time.perf_counter()
            rope_t.append(t1 - t0); clone_t.append(t2 - t1)
        r, c = statistics.median(rope_t[1:]), statistics.median(clone_t[1:])
        print(f"S={S} {str(dtype):15s} ropekit.torch.apply_rope {r*1e3:7.2f} ms  clone {c*1e3:7.2f} ms  ratio {c/r:.2f}")
