"""PyTorch's CPU int4 kernel on the shapes of `int4mm bench --backend cpu`.

Runs torch._convert_weight_to_int4pack_for_cpu + torch._weight_int4pack_mm_for_cpu
(random q in 0..15, random scales and zeros), same thread count, median time,
GB/s of weights (N*K/2 + scales and zeros), to compare with int4mm's "cpu_*" rows.

  python3 -m venv /tmp/tv && /tmp/tv/bin/pip install torch numpy   # PyPI wheel
  /tmp/tv/bin/python bench/torch_cpu_bench.py --shapes 8192x28672 --m 1,8,256 \
      --dtype bf16 --threads 2
"""
import argparse
import statistics
import time

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def bench_one(k, n, m, group_size, dtype, repeats):
    q = torch.randint(0, 16, (n, k), dtype=torch.int32)
    packed = torch._convert_weight_to_int4pack_for_cpu(q, 8)
    sz = torch.randn(k // group_size, n, 2, dtype=dtype) * 0.01
    a = torch.randn(m, k, dtype=dtype)
    out = torch._weight_int4pack_mm_for_cpu(a, packed, group_size, sz)  # warm-up
    assert out.shape == (m, n)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch._weight_int4pack_mm_for_cpu(a, packed, group_size, sz)
        times.append((time.perf_counter() - t0) * 1e6)
    us = statistics.median(times)
    weight_bytes = n * k / 2 + sz.numel() * sz.element_size()
    return us, weight_bytes / us * 1e-3


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default="8192x28672", help="KxN,KxN,...")
    p.add_argument("--m", default="1,8,256")
    p.add_argument("--dtype", default="bf16", choices=sorted(DTYPES))
    p.add_argument("--group-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dtype = DTYPES[args.dtype]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.dtype}, "
          f"group_size {args.group_size}")
    print(f"{'kernel':<28} {'M':>5} {'N':>6} {'K':>6} {'time us':>12} {'weights GB/s':>13}")
    for shape in args.shapes.split(","):
        k, n = (int(x) for x in shape.split("x"))
        for m in (int(x) for x in args.m.split(",")):
            us, gbs = bench_one(k, n, m, args.group_size, dtype, args.repeats)
            print(f"{'torch_int4pack_mm_for_cpu':<28} {m:>5} {n:>6} {k:>6} {us:>12.1f} {gbs:>13.2f}")


if __name__ == "__main__":
    main()
