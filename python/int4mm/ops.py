"""The int4mm operations on numpy, torch and cupy arrays.

Each function mirrors the C++ API (include/int4mm/int4mm.h) and allocates its
output in the framework and on the device of its main input (numpy in, numpy
out; a torch CUDA tensor in, a torch tensor on that device out). Arrays reach
the library as DLPack views, never copied; all validation is the C++ layer's,
so errors are :class:`Int4mmError` with the library's own message.

CUDA work is queued on the caller's current stream: torch's
``torch.cuda.current_stream(device)``, cupy's current stream, or the ``stream``
argument (a ``cudaStream_t`` as an int; 0 is the default stream).
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from . import _C

Int4mmError = _C.Int4mmError

_FLOAT_DTYPES = ("float32", "float16", "bfloat16")
_GROUP_SIZES = (32, 64, 128, 256)

# ---------------------------------------------------------------------------
# Frameworks: which one an array belongs to, and how to allocate beside it.
# torch and cupy are imported only when an array of theirs shows up.
# ---------------------------------------------------------------------------


def _framework(x: Any) -> str:
    module = type(x).__module__.split(".")[0]
    if isinstance(x, np.ndarray):
        return "numpy"
    if module == "torch":
        return "torch"
    if module == "cupy":
        return "cupy"
    raise TypeError(
        f"int4mm: expected a numpy, torch or cupy array, got {type(x).__module__}.{type(x).__name__}"
    )


def _dtype_name(x: Any) -> str:
    name = str(x.dtype)
    return name[len("torch."):] if name.startswith("torch.") else name


def _is_cuda(x: Any) -> bool:
    fw = _framework(x)
    if fw == "torch":
        return x.device.type == "cuda"
    return fw == "cupy"


def _to_c(x: Any) -> Any:
    """The object handed to the binding: a DLPack-exportable view of x."""
    if isinstance(x, np.ndarray):
        if x.dtype.name == "bfloat16":  # ml_dtypes: numpy exports no bfloat16, pass the bits
            return x.view(np.uint16)
        if x.dtype == np.uint16:
            raise Int4mmError(
                "int4mm: uint16 arrays are not accepted (for bfloat16 use torch or ml_dtypes.bfloat16)"
            )
        return x
    if type(x).__module__.split(".")[0] == "torch" and x.requires_grad:
        return x.detach()
    return x


def _empty(like: Any, shape: Tuple[int, ...], dtype: str, host: bool = False) -> Any:
    """An uninitialized array of `shape` and `dtype` in like's framework, on its device."""
    shape = tuple(int(s) for s in shape)
    fw = _framework(like)
    if fw == "torch":
        import torch

        device = "cpu" if host else like.device
        return torch.empty(shape, dtype=getattr(torch, dtype), device=device)
    if fw == "cupy":
        import cupy

        return cupy.empty(shape, dtype=dtype)
    if dtype == "bfloat16":
        import ml_dtypes

        return np.empty(shape, dtype=ml_dtypes.bfloat16)
    return np.empty(shape, dtype=dtype)


def _stream(x: Any, stream: Optional[int]) -> int:
    """The cudaStream_t (as an int) to run on for x: stream if given, else the current one."""
    if stream is not None:
        return int(stream)
    fw = _framework(x)
    if fw == "torch" and x.device.type == "cuda":
        import torch

        return torch.cuda.current_stream(x.device).cuda_stream
    if fw == "cupy":
        import cupy

        return cupy.cuda.get_current_stream().ptr
    return 0


def _resolve_backend(backend: str, x: Any) -> str:
    if backend == "auto":
        return "cuda" if _is_cuda(x) else "cpu"
    return backend


def _valid_nk(n: int, k: int) -> bool:
    return n >= 1 and k >= 32 and k % 32 == 0


# ---------------------------------------------------------------------------
# The operations
# ---------------------------------------------------------------------------


def backend_available(backend: str) -> bool:
    """True when `backend` ("reference", "cpu", "cuda") was built in and can run here."""
    return _C.backend_available(backend)


def packed_shape(backend: str, n: int, k: int) -> Tuple[int, int]:
    """(rows, cols) of the uint8 array that holds an N x K weight packed for `backend`."""
    return _C.packed_shape(backend, int(n), int(k))


def group_quantize(w: Any, group_size: int, variant: str = "stored_rounded",
                   q_format: str = "int32") -> Tuple[Any, Any]:
    """Quantizes W [N, K] per group of `group_size` consecutive k.

    Returns (q, scales_and_zeros): q int32 [N, K] (q_format="int32") or the uint8
    wire format [N, K/2] (q_format="uint8", high nibble = even k), and
    scales_and_zeros [K/group_size, N, 2] in W's dtype. `variant` is
    "stored_rounded" (gpt-fast: q against the rounded scale and zero; the
    default, more accurate) or "pytorch" (PyTorch's test helper). Runs on the
    host; a CUDA tensor is quantized on the CPU and the results returned on
    its device.
    """
    if q_format not in ("int32", "uint8"):
        raise Int4mmError(f'group_quantize: q_format must be "int32" or "uint8", got "{q_format}"')
    source = w
    if _framework(w) == "torch" and w.device.type != "cpu":
        w = w.detach().cpu()
    elif _framework(w) == "cupy":
        raise Int4mmError("group_quantize: runs on the host; pass a numpy or torch array, got cupy")
    if _framework(w) == "torch":
        w = w.detach().contiguous()
    shape = tuple(w.shape)
    n, k = shape if len(shape) == 2 else (1, 0)
    groups = k // group_size if group_size in _GROUP_SIZES else 0
    q = _empty(w, (n, k) if q_format == "int32" else (n, k // 2), q_format)
    sz_dtype = _dtype_name(w) if _dtype_name(w) in _FLOAT_DTYPES else "float32"
    sz = _empty(w, (groups, n, 2), sz_dtype)
    _C.group_quantize(_to_c(w), int(group_size), _to_c(q), _to_c(sz), variant)
    if source is not w and _framework(source) == "torch" and source.device.type != "cpu":
        q, sz = q.to(source.device), sz.to(source.device)
    return q, sz


def _q_nk(q: Any) -> Tuple[int, int]:
    """(N, K) of q (int32 [N, K] or uint8 [N, K/2]); (0, 0) where q is malformed."""
    if len(q.shape) != 2:
        return 0, 0
    dtype = _dtype_name(q)
    if dtype == "int32":
        return int(q.shape[0]), int(q.shape[1])
    if dtype == "uint8":
        return int(q.shape[0]), 2 * int(q.shape[1])
    return 0, 0


def convert_weight_to_int4pack(q: Any, inner_k_tiles: int = 8, backend: str = "auto",
                               stream: Optional[int] = None, threads: int = 0) -> Any:
    """Packs q (int32 [N, K] values 0..15, or uint8 wire [N, K/2]) for `backend`.

    Returns a uint8 array of packed_shape(backend, N, K) beside q. backend
    "auto" is "cuda" for CUDA arrays, else "cpu"; "reference" packs to the
    wire format itself.
    """
    _framework(q)
    n, k = _q_nk(q)
    resolved = _resolve_backend(backend, q)
    # A malformed q gets a placeholder output: the C++ layer reports q first.
    rows, cols = (1, 1)
    if _valid_nk(n, k) and resolved in ("reference", "cpu", "cuda") and backend_available(resolved):
        rows, cols = packed_shape(resolved, n, k)
    packed = _empty(q, (rows, cols), "uint8")
    _C.convert_weight_to_int4pack(_to_c(q), _to_c(packed), int(inner_k_tiles), backend,
                                  _stream(q, stream), int(threads))
    return packed


def unpack(packed: Any, n: int, k: int, q_format: str = "int32", backend: str = "auto",
           stream: Optional[int] = None, threads: int = 0) -> Any:
    """Unpacks an N x K packed weight back to q: int32 [N, K] or uint8 wire [N, K/2]; exact."""
    if q_format not in ("int32", "uint8"):
        raise Int4mmError(f'unpack: q_format must be "int32" or "uint8", got "{q_format}"')
    q = _empty(packed, (n, k) if q_format == "int32" else (n, k // 2), q_format)
    _C.unpack(_to_c(packed), _to_c(q), backend, _stream(packed, stream), int(threads))
    return q


def weight_int4pack_mm(a: Any, packed: Any, group_size: int, scales_and_zeros: Any,
                       out: Optional[Any] = None, backend: str = "auto",
                       stream: Optional[int] = None, threads: int = 0) -> Any:
    """C [M, N] = A [M, K] @ dequantize(packed, scales_and_zeros)^T, in A's dtype.

    N comes from scales_and_zeros [K/group_size, N, 2]. `out`, if given, is
    written and returned (rows may be strided).
    """
    _framework(a)
    if out is None:
        m = int(a.shape[0]) if len(a.shape) == 2 else 0
        n = int(scales_and_zeros.shape[1]) if len(scales_and_zeros.shape) == 3 else 1
        out = _empty(a, (m, n), _dtype_name(a) if _dtype_name(a) in _FLOAT_DTYPES else "float32")
    _C.weight_int4pack_mm(_to_c(a), _to_c(packed), int(group_size), _to_c(scales_and_zeros),
                          _to_c(out), backend, _stream(a, stream), int(threads))
    return out


def dequantize(packed: Any, group_size: int, scales_and_zeros: Any, dtype: Optional[str] = None,
               out: Optional[Any] = None, backend: str = "auto", stream: Optional[int] = None,
               threads: int = 0) -> Any:
    """W [N, K] = (q - 8) * scale + zero, in `dtype` (default: scales_and_zeros' dtype)."""
    if out is None:
        groups, n = (scales_and_zeros.shape[0], scales_and_zeros.shape[1]) \
            if len(scales_and_zeros.shape) == 3 else (0, 1)
        name = _dtype_name(scales_and_zeros) if dtype is None else str(dtype)
        if name.startswith("torch."):
            name = name[len("torch."):]
        elif dtype is not None and name != "bfloat16":
            name = np.dtype(dtype).name
        out = _empty(packed, (n, groups * int(group_size)), name)
    _C.dequantize(_to_c(packed), int(group_size), _to_c(scales_and_zeros), _to_c(out), backend,
                  _stream(packed, stream), int(threads))
    return out
