"""PyTorch's CPU int4 kernel on the shapes of `int4mm bench --backend cpu`.

Runs torch._convert_weight_to_int4pack_for_cpu + torch._weight_int4pack_mm_for_cpu
(random q in 0..15, random scales and zeros), same thread count, median time,
GB/s of weights (N*K/2 + scales and zeros), to compare with int4mm's "cpu_*" rows.

Weights rotate over copies exactly as `int4mm bench --backend cpu` does (enough
to exceed twice the LLC, at most 3 GB and 256 copies), so that both read the
same level of memory; --copies N forces N (1: one warm copy, as PyTorch's own
benchmarks run; pair it with INT4MM_BENCH_COPIES=1 on ours).

  python3 -m venv /tmp/tv && /tmp/tv/bin/pip install torch numpy   # PyPI wheel
  /tmp/tv/bin/python bench/torch_cpu_bench.py --shapes 8192x28672 --m 1,8,256 \
      --dtype bf16 --threads 2
"""
import argparse
import os
import statistics
import time

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def llc_bytes():
    """The last-level cache as glibc's sysconf(_SC_LEVEL3_CACHE_SIZE) gives it to
    tools/bench_cpu.cpp (Python's os.sysconf lacks that name: read sysfs)."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    best = 0
    for index in os.listdir(base) if os.path.isdir(base) else []:
        try:
            with open(f"{base}/{index}/level") as f:
                level = int(f.read())
            with open(f"{base}/{index}/size") as f:
                text = f.read().strip()
            size = int(text.rstrip("KMG")) << {"K": 10, "M": 20, "G": 30}.get(text[-1], 0)
        except (OSError, ValueError):
            continue  # not a cache index (uevent)
        if level == 3:
            best = max(best, size)
    return best or 64 << 20


def copies_for(packed_bytes, forced):
    """The same rule as tools/bench_cpu.cpp."""
    if forced:
        return max(1, forced)
    cap = min(max(3e9 / packed_bytes, 1.0), 256.0)
    return int(min(max(2.0 * llc_bytes() / packed_bytes + 1.0, 1.0), cap))


def bench_one(k, n, m, group_size, dtype, repeats, forced_copies):
    q = torch.randint(0, 16, (n, k), dtype=torch.int32)
    packed0 = torch._convert_weight_to_int4pack_for_cpu(q, 8)
    copies = copies_for(packed0.numel() * packed0.element_size(), forced_copies)
    packed = [packed0] + [packed0.clone() for _ in range(copies - 1)]
    sz = torch.randn(k // group_size, n, 2, dtype=dtype) * 0.01
    a = torch.randn(m, k, dtype=dtype)
    for w in packed:  # warm-up: every copy's pages
        out = torch._weight_int4pack_mm_for_cpu(a, w, group_size, sz)
    assert out.shape == (m, n)
    times = []
    for i in range(max(repeats, 1)):
        w = packed[(i + 1) % copies]
        t0 = time.perf_counter()
        torch._weight_int4pack_mm_for_cpu(a, w, group_size, sz)
        times.append((time.perf_counter() - t0) * 1e6)
    us = statistics.median(times)
    weight_bytes = n * k / 2 + sz.numel() * sz.element_size()
    return us, weight_bytes / us * 1e-3, copies


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default="8192x28672", help="KxN,KxN,...")
    p.add_argument("--m", default="1,8,256")
    p.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    p.add_argument("--group-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--copies", type=int, default=0,
                   help="weight copies to rotate over (0: enough to exceed 2x LLC)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dtype = DTYPES[args.dtype]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.dtype}, "
          f"group_size {args.group_size}")
    print(f"{'kernel':<28} {'M':>5} {'N':>6} {'K':>6} {'time us':>12} {'weights GB/s':>13} "
          f"{'copies':>7}")
    for shape in args.shapes.split(","):
        k, n = (int(x) for x in shape.split("x"))
        for m in (int(x) for x in args.m.split(",")):
            us, gbs, copies = bench_one(k, n, m, args.group_size, dtype, args.repeats,
                                        args.copies)
            print(f"{'torch_int4pack_mm_for_cpu':<28} {m:>5} {n:>6} {k:>6} {us:>12.1f} "
                  f"{gbs:>13.2f} {copies:>7}")


if __name__ == "__main__":
    main()
