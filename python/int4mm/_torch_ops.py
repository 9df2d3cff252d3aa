"""PyTorch operators: torch.ops.int4mm.convert_weight_to_int4pack and weight_int4pack_mm.

Their schemas are those of torch._convert_weight_to_int4pack and
torch._weight_int4pack_mm, so code written for PyTorch's int4 ops runs by
swapping the namespace:

    packed = torch.ops.int4mm.convert_weight_to_int4pack(q, 8)  # q int32 [N, K] or uint8 [N, K/2]
    c = torch.ops.int4mm.weight_int4pack_mm(a, packed, 128, scales_and_zeros)

The packed tensor's layout belongs to the backend of its device (CPU or CUDA),
as with PyTorch's own ops. Both ops have fake (meta) kernels, so
torch.compile(fullgraph=True) traces through them; N of the matmul comes from
scales_and_zeros [K/group_size, N, 2], since the packed shape is private.
"""

import torch

from . import _C, ops

_lib = torch.library.Library("int4mm", "DEF")
_lib.define("convert_weight_to_int4pack(Tensor w, int inner_k_tiles) -> Tensor")
_lib.define(
    "weight_int4pack_mm(Tensor a, Tensor packed, int group_size, Tensor scales_and_zeros) -> Tensor"
)


def _backend(device: torch.device) -> str:
    return "cuda" if device.type == "cuda" else "cpu"


def _convert_weight_to_int4pack(w: torch.Tensor, inner_k_tiles: int) -> torch.Tensor:
    return ops.convert_weight_to_int4pack(w, inner_k_tiles)


# The current stream's cudaStream_t as an int, by device index; the public
# torch.cuda.current_stream(device).cuda_stream builds a Stream object (slower).
_current_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)


def _stream(t: torch.Tensor) -> int:
    if t.device.type != "cuda":
        return 0
    if _current_raw_stream is not None:
        return _current_raw_stream(t.device.index)
    return torch.cuda.current_stream(t.device).cuda_stream


def weight_int4pack_mm_eager(a: torch.Tensor, packed: torch.Tensor, group_size: int,
                             scales_and_zeros: torch.Tensor) -> torch.Tensor:
    """The operator's kernel, callable without the dispatcher (Int4Linear's eager path).

    Decode runs one small matmul per layer, so per-call overhead counts: this
    skips ops.py's framework checks, allocates with a.new_empty and hands the
    tensors to C++ by their attributes rather than DLPack. The C++ layer
    still validates everything.
    """
    m = a.shape[0] if a.dim() == 2 else 0
    n = scales_and_zeros.shape[1] if scales_and_zeros.dim() == 3 else 1
    out = a.new_empty((m, n))
    _C.weight_int4pack_mm_torch(a, packed, group_size, scales_and_zeros, out, _stream(a))
    return out


def _weight_int4pack_mm(a: torch.Tensor, packed: torch.Tensor, group_size: int,
                        scales_and_zeros: torch.Tensor) -> torch.Tensor:
    return weight_int4pack_mm_eager(a, packed, group_size, scales_and_zeros)


for _key in ("CPU", "CUDA"):
    _lib.impl("convert_weight_to_int4pack", _convert_weight_to_int4pack, _key)
    _lib.impl("weight_int4pack_mm", _weight_int4pack_mm, _key)

_register_fake = getattr(torch.library, "register_fake", None) or torch.library.impl_abstract


@_register_fake("int4mm::convert_weight_to_int4pack")
def _convert_weight_to_int4pack_fake(w, inner_k_tiles):
    torch._check(w.dim() == 2, lambda: f"convert_weight_to_int4pack: q must have 2 dimensions, got {w.dim()}")
    torch._check(w.dtype in (torch.int32, torch.uint8),
                 lambda: f"convert_weight_to_int4pack: q must be int32 [N, K] or uint8 [N, K/2], got {w.dtype}")
    n = w.shape[0]
    k = w.shape[1] * (2 if w.dtype == torch.uint8 else 1)
    rows, cols = _C.packed_shape(_backend(w.device), int(n), int(k))
    return w.new_empty((rows, cols), dtype=torch.uint8)


@_register_fake("int4mm::weight_int4pack_mm")
def _weight_int4pack_mm_fake(a, packed, group_size, scales_and_zeros):
    torch._check(a.dim() == 2, lambda: f"weight_int4pack_mm: A must have 2 dimensions, got {a.dim()}")
    torch._check(scales_and_zeros.dim() == 3,
                 lambda: f"weight_int4pack_mm: scales_and_zeros must have 3 dimensions, got {scales_and_zeros.dim()}")
    return a.new_empty((a.shape[0], scales_and_zeros.shape[1]))
