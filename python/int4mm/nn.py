"""Int4Linear, an int4 weight-only nn.Linear, and quantize_, which swaps a model's layers.

State (what state_dict saves, and what moves between CPU and GPU):

    weight            uint8 [N, K/2]           PyTorch's wire format, high nibble = even k
    scales_and_zeros  [K/group_size, N, 2]     in the activation dtype
    bias              [N] or None

The backend-private packed layout is a non-persistent buffer `packed`,
rebuilt from `weight` whenever the module is moved or cast (.to, .cuda, .half)
and after load_state_dict, so a checkpoint saved on one device loads on any.
forward runs torch.ops.int4mm.weight_int4pack_mm, which torch.compile traces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from . import _torch_ops  # noqa: F401  (registers torch.ops.int4mm.*)
from . import ops

_is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None) or torch._dynamo.is_compiling

# quantizer: a variant name of group_quantize, or a callable
# (W float [N, K], group_size) -> (q int32 [N, K] or uint8 [N, K/2], scales_and_zeros).
Quantizer = Union[str, Callable[[torch.Tensor, int], Tuple[torch.Tensor, torch.Tensor]]]


class Int4Linear(nn.Module):
    """y = x @ dequantize(weight)^T + bias, with a 4-bit weight in groups of `group_size`."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 group_size: int = 128, inner_k_tiles: int = 8, device=None,
                 dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        if in_features % group_size != 0:
            raise ops.Int4mmError(
                f"Int4Linear: in_features must be a multiple of group_size={group_size}, got {in_features}")
        self.in_features = in_features
        self.out_features = out_features
        self.group_size = group_size
        self.inner_k_tiles = inner_k_tiles
        self.register_buffer(
            "weight", torch.full((out_features, in_features // 2), 0x88, dtype=torch.uint8, device=device))
        self.register_buffer(
            "scales_and_zeros",
            torch.zeros((in_features // group_size, out_features, 2), dtype=dtype, device=device))
        if bias:
            self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device),
                                     requires_grad=False)
        else:
            self.register_parameter("bias", None)
        self.register_buffer("packed", None, persistent=False)
        self._repack()

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int = 128,
                    quantizer: Quantizer = "stored_rounded", inner_k_tiles: int = 8) -> "Int4Linear":
        """Quantizes linear.weight (on the host) into a new Int4Linear on linear's device.

        The activation dtype is the weight's dtype. quantizer: "stored_rounded"
        (default, gpt-fast), "pytorch" (PyTorch's test helper), or a callable
        (W, group_size) -> (q, scales_and_zeros).
        """
        w = linear.weight.detach()
        module = cls(linear.in_features, linear.out_features, bias=linear.bias is not None,
                     group_size=group_size, inner_k_tiles=inner_k_tiles, device="meta", dtype=w.dtype)
        if callable(quantizer):
            q, sz = quantizer(w, group_size)
        else:
            q, sz = ops.group_quantize(w, group_size, variant=quantizer, q_format="uint8")
        if q.dtype == torch.int32:  # to the wire format: the reference "packing" is the wire format
            q = ops.convert_weight_to_int4pack(q.cpu(), backend="reference")
        module.weight = q.to(w.device)
        module.scales_and_zeros = sz.to(device=w.device, dtype=w.dtype).contiguous()
        if linear.bias is not None:
            module.bias = nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        module._repack()
        return module

    def _repack(self) -> None:
        if self.weight.device.type == "meta":
            self.packed = None
            return
        self.packed = torch.ops.int4mm.convert_weight_to_int4pack(self.weight, self.inner_k_tiles)

    def _apply(self, fn, *args, **kwargs):
        self.packed = None  # a packed layout belongs to one backend: rebuild, never move it
        super()._apply(fn, *args, **kwargs)
        self._repack()
        return self

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._repack()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        if _is_compiling():  # the registered operator: torch.compile traces its fake kernel
            y = torch.ops.int4mm.weight_int4pack_mm(x2, self.packed, self.group_size, self.scales_and_zeros)
        else:  # the same kernel without the dispatcher's ~10 us per call (decode is per-call bound)
            y = _torch_ops.weight_int4pack_mm_eager(x2, self.packed, self.group_size, self.scales_and_zeros)
        y = y.reshape(*lead, self.out_features)
        if self.bias is not None:
            y = y + self.bias
        return y

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, group_size={self.group_size}, "
                f"dtype={self.scales_and_zeros.dtype}")


@dataclass
class QuantizeReport:
    """What quantize_ did: the layers it replaced and the ones it left, with why."""

    replaced: List[str] = field(default_factory=list)
    skipped: Dict[str, str] = field(default_factory=dict)
    bytes_before: int = 0
    bytes_after: int = 0

    def __str__(self) -> str:
        lines = [f"int4mm.quantize_: replaced {len(self.replaced)} nn.Linear, skipped {len(self.skipped)}; "
                 f"linear weights {self.bytes_before / 2**20:.1f} MiB -> {self.bytes_after / 2**20:.1f} MiB"]
        lines += [f"  skipped {name}: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)


def quantize_(model: nn.Module, group_size: int = 128,
              filter: Optional[Callable[[nn.Module, str], bool]] = None,
              quantizer: Quantizer = "stored_rounded", inner_k_tiles: int = 8,
              verbose: bool = False) -> QuantizeReport:
    """Replaces, in place, every nn.Linear of `model` by an Int4Linear.

    filter(module, fully_qualified_name) -> bool chooses layers (default: all).
    Layers whose in_features is not a multiple of group_size are skipped.
    Returns a QuantizeReport (printed when verbose).
    """
    report = QuantizeReport()
    targets = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    for name, linear in targets:
        if not name:
            report.skipped[name] = "the model itself is an nn.Linear: use Int4Linear.from_linear"
            continue
        if filter is not None and not filter(linear, name):
            report.skipped[name] = "filter"
            continue
        if linear.in_features % group_size != 0:
            report.skipped[name] = f"in_features={linear.in_features} is not a multiple of group_size={group_size}"
            continue
        if linear.weight.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            report.skipped[name] = f"weight dtype {linear.weight.dtype} is not float32, float16 or bfloat16"
            continue
        replacement = Int4Linear.from_linear(linear, group_size=group_size, quantizer=quantizer,
                                             inner_k_tiles=inner_k_tiles)
        report.bytes_before += linear.weight.numel() * linear.weight.element_size()
        report.bytes_after += (replacement.weight.numel()
                               + replacement.scales_and_zeros.numel() * replacement.scales_and_zeros.element_size())
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, replacement)
        report.replaced.append(name)
    if verbose:
        print(report)
    return report
