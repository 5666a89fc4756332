#!/usr/bin/env python3
"""Registers, stack and spills of every rope_kernel specialisation, from ptxas -v output.

Usage: gpu_ptxas_report.py [--check] < build.log  (a build with CMAKE_CUDA_FLAGS=-Xptxas=-v)
--check: exit 1 when a kernel spills or a table-path kernel (rows, no xPos) uses more than 64
registers. Prints one line per kernel: arch, dtype, values per access, style, cos/sin, xPos.
"""
import re
import subprocess
import sys

MODES = {"CosSin": ["rows", "mixed"], "XposMode": ["none", "xpos", "runtime"], "Style": ["half", "inter"]}


def parse(text):
    rows, current = [], None
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '(\S+)' for '(sm_\d+)'", line)
        if m:
            current = {"name": m.group(1), "arch": m.group(2)}
            continue
        if current is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and "stack" not in current:
            current.update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
            continue
        m = re.search(r"Used (\d+) registers", line)
        if m:
            current["registers"] = int(m.group(1))
            rows.append(current)
            current = None
    return rows


def describe(names):
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
    pattern = (r"KernelSpec<ropekit::detail::cuda::(\w+), (\d+), \(ropekit::Style\)(\d), "
               r"\(ropekit::detail::cuda::CosSin\)(\d), \(ropekit::detail::cuda::XposMode\)(\d)>")
    specs = []
    for name in out:
        m = re.search(pattern, name)
        if not m:
            specs.append(None)
            continue
        t, n, style, cos_sin, xpos = m.groups()
        specs.append({"dtype": t.lower(), "n": int(n), "style": MODES["Style"][int(style)],
                      "cos_sin": MODES["CosSin"][int(cos_sin)], "xpos": MODES["XposMode"][int(xpos)]})
    return specs


def main():
    check = "--check" in sys.argv[1:]
    rows = [r for r in parse(sys.stdin.read()) if "rope_kernel" in r["name"]]
    seen, failed = set(), []
    for r, spec in zip(rows, describe([r["name"] for r in rows])):
        if spec is None or (r["arch"], r["name"]) in seen:
            continue
        seen.add((r["arch"], r["name"]))
        table_path = spec["cos_sin"] == "rows" and spec["xpos"] == "none"
        line = (f"{r['arch']} {spec['dtype']:4s} N={spec['n']} {spec['style']:5s} {spec['cos_sin']:5s} {spec['xpos']:7s} "
                f"registers {r['registers']:3d}  stack {r.get('stack', 0):3d}  spill {r.get('spill_stores', 0)}/{r.get('spill_loads', 0)}"
                f"{'  (table path)' if table_path else ''}")
        print(line)
        if r.get("spill_stores", 0) or r.get("spill_loads", 0) or (table_path and r["registers"] > 64):
            failed.append(line)
    if not seen:
        print("no rope_kernel in the input (build with CMAKE_CUDA_FLAGS=-Xptxas=-v)")
        sys.exit(1 if check else 0)
    if failed:
        print("over budget (spills, or more than 64 registers on the table path):")
        for line in failed:
            print("  " + line)
        sys.exit(1 if check else 0)


if __name__ == "__main__":
    main()
