#!/usr/bin/env python3
"""Turns `int4mm bench --json` files (and bench/torch_cuda_bench.py's JSON)
from one run into the markdown tables of docs/cuda.md: per shape and M, our
kernel beside the Metal-port baseline, cuBLAS dense and tinygemm, as times
and as ratios to the copy bandwidth measured in the same run.

  python3 bench/summarize.py out/bench-bf16.json [out/torch.json]

With --groups, the files hold runs of several group sizes (`int4mm bench
--group-size G`, the same shapes and M; one file each or merged), and the
table puts each group's time beside group 128's:

  python3 bench/summarize.py --groups out/group32.json out/group64.json ...
"""
import argparse
import json


def load(path):
    with open(path) as f:
        data = json.load(f)
    return data["records"] if isinstance(data, dict) else data


def by_shape(records):
    """(m, n, k) -> that shape's records in the order tools/bench_cuda.cu
    writes them: cublas_dense, then the dispatched kernel, then the
    alternatives (metal_port, gemm_mma, ...)."""
    shapes = {}
    for r in records:
        shapes.setdefault((r["m"], r["n"], r["k"]), []).append(r)
    return shapes


def dispatched(records):
    """The record of the kernel the library dispatched, among one shape's."""
    return next(r for r in records if r["kernel"] != "cublas_dense")


def main(paths):
    ours = [r for p in paths if "torch" not in p for r in load(p)]
    torch = {(r["m"], r["n"], r["k"]): r for p in paths if "torch" in p for r in load(p)}
    dtype = ours[0]["dtype"]
    bw = ours[0]["bandwidth_gbs"]
    print(f"{dtype}, group {ours[1]['group_size']}; copy bandwidth {bw:.0f} GB/s (read + write) in this run\n")
    print("| K x N | M | ours (kernel) us | % of copy bw | cuBLAS us | vs cuBLAS | tinygemm us | vs tinygemm | Metal port us |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (m, n, k), records in sorted(by_shape(ours).items(), key=lambda kv: (kv[0][2], kv[0][1], kv[0][0])):
        if m == 0:
            continue
        named = {r["kernel"]: r for r in records}
        dense = named.get("cublas_dense")
        metal = named.get("metal_port")
        mine = dispatched(records)
        name = mine["kernel"]
        tiny = torch.get((m, n, k)) if dtype == "bfloat16" else None
        cells = [f"{k} x {n}", str(m), f"{mine['time_us']:.1f} ({name})",
                 f"{mine['pct_of_bandwidth']:.0f}%",
                 f"{dense['time_us']:.1f}" if dense else "-",
                 f"{dense['time_us'] / mine['time_us']:.2f}x" if dense else "-",
                 f"{tiny['time_us']:.1f}" if tiny else "-",
                 f"{tiny['time_us'] / mine['time_us']:.2f}x" if tiny else "-",
                 f"{metal['time_us']:.1f}" if metal else "-"]
        print("| " + " | ".join(cells) + " |")


def groups_table(paths):
    """Each group size's dispatched time per shape and M, beside group 128's."""
    runs = {}  # group size -> its records
    for r in (r for path in paths for r in load(path) if r["m"] > 0):
        runs.setdefault(r["group_size"], []).append(r)
    times = {g: {shape: dispatched(rs)["time_us"] for shape, rs in by_shape(records).items()}
             for g, records in runs.items()}
    if 128 not in times:
        raise SystemExit("--groups needs a group 128 run to compare with")
    others = sorted(g for g in times if g != 128)
    print("| K x N | M | group 128 us | " + " | ".join(f"group {g}" for g in others) + " |")
    print("|---" * (3 + len(others)) + "|")
    for m, n, k in sorted(times[128], key=lambda s: s[0]):  # by M, the shapes in the run's order
        base = times[128][(m, n, k)]
        cells = [f"{k} x {n}", str(m), f"{base:.2f}"]
        for g in others:
            t = times[g].get((m, n, k))
            cells.append(f"{t:.2f} ({t / base:.2f}x)" if t is not None else "-")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", action="store_true", help="runs of several group sizes: the group-size table")
    parser.add_argument("paths", nargs="+", help="int4mm bench --json files (and torch_cuda_bench.py's)")
    args = parser.parse_args()
    groups_table(args.paths) if args.groups else main(args.paths)
