#!/usr/bin/env python3
"""The A/B table of a device call: `int4mm bench --json` files named
DIR/VARIANT-DTYPE-ROUND.json, one per build, dtype and round, compared per
shape and M on the kernel the library dispatched (the first record after
cuBLAS's). The first variant is the baseline: each other's time is shown
with baseline / variant (above 1: the variant is faster) and cuBLAS / it.

  python3 bench/ab_table.py DIR --variants base,new,s15 --dtypes bf16,fp16 --rounds 2
"""
import argparse

from summarize import by_shape, dispatched, load


def dispatched_times(path):
    """(k, n, m) -> (kernel, us, cuBLAS us) of one bench JSON file."""
    out = {}
    for (m, n, k), records in by_shape(load(path)).items():
        dense = next((r for r in records if r["kernel"] == "cublas_dense"), None)
        if dense is not None:
            mine = dispatched(records)
            out[(k, n, m)] = (mine["kernel"], mine["time_us"], dense["time_us"])
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir")
    parser.add_argument("--variants", default="base,new")
    parser.add_argument("--dtypes", default="bf16,fp16")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    variants = args.variants.split(",")
    rounds = range(1, args.rounds + 1)
    for dtype in args.dtypes.split(","):
        runs = {(v, i): dispatched_times(f"{args.dir}/{v}-{dtype}-{i}.json") for v in variants for i in rounds}
        base = variants[0]
        for key in sorted(runs[(base, 1)], key=lambda k: (k[0] * k[1], k[0], k[2])):
            row = f"{dtype} {key[0]}x{key[1]} M={key[2]} ({runs[(base, 1)][key][0]}):"
            for i in rounds:
                b = runs[(base, i)][key][1]
                row += f" r{i} {base} {b:6.2f}"
                for v in variants[1:]:
                    _, t, cublas = runs[(v, i)][key]
                    row += f" {v} {t:6.2f} ({b / t:.3f}x; {cublas / t:.2f}x cuBLAS)"
                row += " |"
            print(row)


if __name__ == "__main__":
    main()
