"""int4mm: int4 weight-only quantized matmul (W4A16) for numpy, torch and cupy.

    import int4mm
    q, sz = int4mm.group_quantize(w, 128)                 # w [N, K] -> q, scales_and_zeros
    packed = int4mm.convert_weight_to_int4pack(q)        # backend-private layout
    c = int4mm.weight_int4pack_mm(a, packed, 128, sz)    # a [M, K] -> c [M, N]

With torch installed, `import int4mm` also registers the operators
torch.ops.int4mm.convert_weight_to_int4pack / weight_int4pack_mm (the
signatures of torch._convert_weight_to_int4pack / torch._weight_int4pack_mm)
and provides int4mm.nn.Int4Linear and int4mm.quantize_. int4mm.parallel shards
quantized weights and models for tensor parallelism (docs/parallel.md).
"""

from . import _C, parallel
from .ops import (
    Int4mmError,
    backend_available,
    convert_weight_to_int4pack,
    dequantize,
    group_quantize,
    packed_shape,
    unpack,
    weight_int4pack_mm,
)

__version__ = _C.__version__

__all__ = [
    "Int4mmError",
    "backend_available",
    "convert_weight_to_int4pack",
    "dequantize",
    "group_quantize",
    "packed_shape",
    "parallel",
    "unpack",
    "weight_int4pack_mm",
]

try:
    import torch as _torch  # noqa: F401
except ImportError:  # numpy-only install: no operators, no nn
    _torch = None

if _torch is not None:
    from . import _torch_ops  # noqa: F401  (registers torch.ops.int4mm.*)
    from . import nn
    from .nn import ColumnParallelInt4Linear, Int4Linear, QuantizeReport, RowParallelInt4Linear, quantize_

    __all__ += ["ColumnParallelInt4Linear", "Int4Linear", "QuantizeReport", "RowParallelInt4Linear", "nn",
                "quantize_"]
