"""Per-call cost of int4mm's matmul entry points, beside PyTorch's own int4 op.

Decoding runs one small matmul (M = 1) per layer per token, so the microseconds
spent before the kernel starts matter as much as the kernel. This prints
us/call for each layer of the stack (operator, Python API, binding with and
without DLPack, Int4Linear) and, on CUDA, a profiler table of Int4Linear.

    python examples/op_overhead.py          # CUDA if present (N = K = 4096), else CPU (256)
"""

import time

import torch

import int4mm
from int4mm import _C, _torch_ops

dev = "cuda" if torch.cuda.is_available() else "cpu"
n = k = 4096 if dev == "cuda" else 256
w = torch.randn(n, k, dtype=torch.bfloat16)
wire, sz = int4mm.group_quantize(w, 128, q_format="uint8")
wire, sz = wire.to(dev), sz.to(dev)
packed = torch.ops.int4mm.convert_weight_to_int4pack(wire, 8)
a = torch.randn(1, k, dtype=torch.bfloat16, device=dev)
out = torch.empty(1, n, dtype=torch.bfloat16, device=dev)
a0, out0 = a[:0], out[:0]  # M = 0: validation and argument passing only, no kernel
stream = torch.cuda.current_stream().cuda_stream if dev == "cuda" else 0
layer = int4mm.Int4Linear.from_linear(torch.nn.Linear(k, n, bias=False).to(torch.bfloat16).to(dev))


def bench(name, f, iters=2000):
    for _ in range(50):
        f()
    if dev == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        f()
    if dev == "cuda":
        torch.cuda.synchronize()
    print(f"{name:<48} {1e6 * (time.perf_counter() - start) / iters:8.1f} us/call")


print(f"{dev}, N = K = {n}, M = 1, bfloat16")
bench("torch.ops.int4mm.weight_int4pack_mm", lambda: torch.ops.int4mm.weight_int4pack_mm(a, packed, 128, sz))
bench("int4mm.weight_int4pack_mm (Python API)", lambda: int4mm.weight_int4pack_mm(a, packed, 128, sz))
bench("Int4Linear (eager path)", lambda: layer(a))
bench("weight_int4pack_mm_eager", lambda: _torch_ops.weight_int4pack_mm_eager(a, packed, 128, sz))
bench("_C.weight_int4pack_mm_torch, out given", lambda: _C.weight_int4pack_mm_torch(a, packed, 128, sz, out, stream))
bench("_C.weight_int4pack_mm (DLPack), out given", lambda: _C.weight_int4pack_mm(a, packed, 128, sz, out, "auto", stream, 0))
bench("_C.weight_int4pack_mm_torch, M = 0", lambda: _C.weight_int4pack_mm_torch(a0, packed, 128, sz, out0, stream))
bench("_C.weight_int4pack_mm (DLPack), M = 0", lambda: _C.weight_int4pack_mm(a0, packed, 128, sz, out0, "auto", stream, 0))
bench("torch.empty (for scale)", lambda: torch.empty(1, n, dtype=torch.bfloat16, device=dev))
if dev == "cuda":
    theirs = torch._convert_weight_to_int4pack(wire, 8)
    bench("torch._weight_int4pack_mm (PyTorch's)", lambda: torch._weight_int4pack_mm(a, theirs, 128, sz))
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(20):
            layer(a)
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=12))
