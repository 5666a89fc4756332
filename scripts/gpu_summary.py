#!/usr/bin/env python3
"""The last table of scripts/gpu_run.sh: the peer comparison, then each target with its figure.

Reads the RESULT / HOST / PYCALL lines of bench/gpu_bench.cu and bench/gpu_bench.py logs:
  RESULT <impl> <case> <median_us> <GB/s> <ratio_to_copy>
  HOST <impl> <case> <host_us_per_call>
  PYCALL <impl> <case> <us_per_call>
Usage: gpu_summary.py LOG... (missing files are ignored)
"""
import sys

# (label, kind, impl, case without the style suffix, goal, "min" or "max")
TARGETS = [
    ("prefill B8xS4096: share of copy bandwidth", "ratio", "ropekit", "prefill_B8_S4096", 0.90, "min"),
    ("prefill B1xS8192: share of copy bandwidth", "ratio", "ropekit", "prefill_B1_S8192", 0.85, "min"),
    ("decode B128: us per kernel (graph)", "us", "ropekit_graph", "decode_B128_S1", 4.0, "max"),
    ("decode B128 device offsets: us per kernel", "us", "ropekit_graph", "decode_B128_offsets", 4.0, "max"),
    ("decode B128: host us per eager C++ call", "host", "ropekit", "decode_B128_S1", 3.0, "max"),
    ("decode B128: us per call from Python", "pycall", "ropekit_py", "decode_B128_S1", 10.0, "max"),
    ("decode B128 device offsets: us per Python call", "pycall", "ropekit_py", "decode_B128_offsets", 10.0, "max"),
]
PEERS = ["ropekit", "ropekit_py", "torch_eager", "torch_compile", "liger", "flash_attn_triton"]


def read(paths):
    results, host, pycall = {}, {}, {}
    for path in paths:
        try:
            lines = open(path, errors="replace").read().splitlines()
        except OSError:
            continue
        for line in lines:
            f = line.split()
            try:
                if f[:1] == ["RESULT"] and len(f) == 6:
                    results[(f[1], f[2])] = (float(f[3]), float(f[4]), float(f[5]))
                elif f[:1] == ["HOST"] and len(f) == 4:
                    host[(f[1], f[2])] = float(f[3])
                elif f[:1] == ["PYCALL"] and len(f) == 4:
                    pycall[(f[1], f[2])] = float(f[3])
            except ValueError:
                continue
    return results, host, pycall


def main():
    results, host, pycall = read(sys.argv[1:])
    cases = sorted({case for (_, case) in results if case.endswith("_fwd")}, key=lambda c: (not c.startswith("prefill"), c))
    if cases:
        print("Peers (bf16, q 32 + k 8 heads x 128, forward; median us per call, graph replay for *_graph; ratio = copy time / time):")
        print(f"{'case':36s} {'ropekit':>9s} {'ratio':>6s}" + "".join(f" {p:>17s}" for p in PEERS[1:]))
        for case in cases:
            row = results.get(("ropekit", case))
            cells = f"{case:36s} {row[0]:9.2f} {row[2]:6.3f}" if row else f"{case:36s} {'-':>9s} {'-':>6s}"
            for peer in PEERS[1:]:
                r = results.get((peer, case))
                cells += f" {r[0]:17.2f}" if r else f" {'-':>17s}"
            print(cells)
        graph_cases = [c for c in cases if c.startswith("decode")]
        for case in graph_cases:
            cells = f"{case + ' (graph)':36s}"
            r = results.get(("ropekit_graph", case))
            cells += f" {r[0]:9.2f} {r[2]:6.3f}" if r else f" {'-':>9s} {'-':>6s}"
            for peer in PEERS[1:]:
                g = results.get((peer + "_graph", case))
                cells += f" {g[0]:17.2f}" if g else f" {'-':>17s}"
            print(cells)
        print()
    print("Targets (bf16, q 32 + k 8 heads x 128, in place, forward):")
    print(f"{'target':50s} {'style':6s} {'figure':>9s} {'goal':>9s}  result")
    for label, kind, impl, case, goal, sense in TARGETS:
        for style in ("half", "inter"):
            key = (impl, f"{case}_{style}_fwd")
            if kind == "ratio":
                value = results.get(key, (None, None, None))[2]
            elif kind == "us":
                value = results.get(key, (None,))[0]
            elif kind == "host":
                value = host.get(key)
            else:
                value = pycall.get(key)
            goal_text = (">= " if sense == "min" else "<= ") + (f"{goal:.2f}" if kind == "ratio" else f"{goal:g} us")
            if value is None:
                print(f"{label:50s} {style:6s} {'-':>9s} {goal_text:>9s}  not measured")
                continue
            met = value >= goal if sense == "min" else value <= goal
            print(f"{label:50s} {style:6s} {value:9.3f} {goal_text:>9s}  {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
