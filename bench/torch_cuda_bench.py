#!/usr/bin/env python3
"""PyTorch's own int4 kernel (tinygemm: torch._weight_int4pack_mm, bf16) timed
the way `int4mm bench --backend cuda` times ours (PERF.md): CUDA-graph replay
of 20 calls, weights rotated over copies exceeding 3x L2, median of >= 20
replays, output checked against a float64 product first. Run it in the same
device session as `int4mm bench` so the two tables are comparable.

  python3 bench/torch_cuda_bench.py --shapes 4096x4096,8192x28672 --m 1,16,256 --json out.json
"""
import argparse
import json
import math
import statistics

import torch


def time_graph(fn, calls=20, replays=20):
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for i in range(3):
            fn(i)  # warm-up outside capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(calls):
            fn(i)
    for _ in range(3):
        graph.replay()
    times = []
    for _ in range(replays):
        start = torch.cuda.Event(enable_timing=True)
        stop = torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) * 1000.0 / calls)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="4096x6144,4096x4096,4096x28672,14336x4096",
                        help="K x N, comma-separated")
    parser.add_argument("--m", default="1,16,256")
    parser.add_argument("--group-size", type=int, default=128)
    parser.add_argument("--inner-k-tiles", type=int, default=8)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    dev = torch.device("cuda")
    l2 = torch.cuda.get_device_properties(dev).L2_cache_size
    g = args.group_size
    records = []
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(dev)}")
    print(f"{'kernel':<14}{'M':>6}{'N':>7}{'K':>7}{'time us':>11}{'TB/s':>7}{'rel err':>10}")
    for shape in args.shapes.split(","):
        k, n = (int(v) for v in shape.split("x"))
        torch.manual_seed(0)
        w = torch.randn(n, k, device=dev) * 0.02
        groups = w.reshape(n, k // g, g)
        mn, mx = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
        scale = ((mx - mn).clamp(min=1e-6) / 15).to(torch.bfloat16)
        zero = (mn + 8 * scale.float()).to(torch.bfloat16)
        low = zero.float() - 8 * scale.float()
        q = ((groups - low) / scale.float()).round().clamp(0, 15).to(torch.int32).reshape(n, k)
        sz = torch.stack([scale.reshape(n, k // g).t(), zero.reshape(n, k // g).t()], -1).contiguous()
        wire = ((q[:, ::2] << 4) | q[:, 1::2]).to(torch.uint8)
        packed = torch._convert_weight_to_int4pack(wire, args.inner_k_tiles)
        w_deq = ((q.reshape(n, k // g, g) - 8) * scale.float() + zero.float()).reshape(n, k)
        weight_bytes = n * k // 2 + sz.numel() * 2
        copies = max(1, math.ceil(3 * l2 / weight_bytes) + 1)
        packs = [packed.clone() for _ in range(copies)]
        szs = [sz.clone() for _ in range(copies)]
        for m in (int(v) for v in args.m.split(",")):
            a = torch.randn(m, k, device=dev).to(torch.bfloat16)
            ref = a.double() @ w_deq.double().t()
            out = torch._weight_int4pack_mm(a, packed, g, sz)
            err = ((out.double() - ref).abs().max() / ref.abs().max()).item()
            us = time_graph(lambda i: torch._weight_int4pack_mm(a, packs[i % copies], g, szs[i % copies]))
            op_bytes = weight_bytes + 2 * m * (k + n)
            print(f"{'tinygemm':<14}{m:>6}{n:>7}{k:>7}{us:>11.1f}{op_bytes / us / 1e6:>7.2f}{err:>10.1e}")
            records.append(dict(backend="torch", kernel="tinygemm", dtype="bfloat16", group_size=g,
                                m=m, n=n, k=k, time_us=us, weight_bytes=weight_bytes, bytes=op_bytes,
                                flops=2 * m * n * k, max_rel_error=err))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "records": records}, f, indent=1)


if __name__ == "__main__":
    main()
