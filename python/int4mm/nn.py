"""Int4Linear, an int4 weight-only nn.Linear, and quantize_, which swaps a model's layers.

State (what state_dict saves, and what moves between CPU and GPU):

    weight            uint8 [N, K/2]           PyTorch's wire format, high nibble = even k
    scales_and_zeros  [K/group_size, N, 2]     in the activation dtype
    bias              [N] or None

The backend-private packed layout is a non-persistent buffer `packed`,
rebuilt from `weight` whenever the module is moved or cast (.to, .cuda, .half)
and after load_state_dict, so a checkpoint saved on one device loads on any.
forward runs torch.ops.int4mm.weight_int4pack_mm, which torch.compile traces.

ColumnParallelInt4Linear and RowParallelInt4Linear are Int4Linear split over
the ranks of a torch.distributed process group (tensor parallelism; their state
is this rank's shard): see int4mm.parallel and docs/parallel.md.
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
        module.weight, module.scales_and_zeros = _quantize(w, group_size, quantizer)
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


def _quantize(w: torch.Tensor, group_size: int, quantizer: Quantizer) -> Tuple[torch.Tensor, torch.Tensor]:
    """(wire uint8 [N, K/2], scales_and_zeros [K/group_size, N, 2] in w's dtype), both on w's device."""
    if callable(quantizer):
        q, sz = quantizer(w, group_size)
    else:
        q, sz = ops.group_quantize(w, group_size, variant=quantizer, q_format="uint8")
    if q.dtype == torch.int32:  # to the wire format: the reference "packing" is the wire format
        q = ops.convert_weight_to_int4pack(q.cpu(), backend="reference")
    return q.to(w.device), sz.to(device=w.device, dtype=w.dtype).contiguous()


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


# ---------------------------------------------------------------------------
# Tensor parallelism (torch.distributed: NCCL on GPUs, gloo on CPUs); see int4mm.parallel
# ---------------------------------------------------------------------------


def _group_info(op: str, group) -> Tuple[int, int]:
    """(world size, this process's rank) of `group` (None: the WORLD)."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise ops.Int4mmError(f"{op}: torch.distributed is not initialized: call "
                              f"torch.distributed.init_process_group first")
    return dist.get_world_size(group), dist.get_rank(group)


def _own(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """A contiguous copy that shares no storage with t (a shard's view would keep the whole weight alive)."""
    return None if t is None else t.clone(memory_format=torch.contiguous_format)


def _sub_linear(linear: nn.Linear, rows: slice, cols: slice, bias: bool) -> nn.Linear:
    """An nn.Linear holding views of linear's weight rows x cols (and bias[rows] if bias), allocating nothing."""
    w = linear.weight.detach()[rows, cols]
    part = nn.Linear(w.shape[1], w.shape[0], bias=False, device="meta", dtype=w.dtype)
    part.weight = nn.Parameter(w, requires_grad=False)
    if bias and linear.bias is not None:
        part.bias = nn.Parameter(linear.bias.detach()[rows], requires_grad=False)
    return part


class ColumnParallelInt4Linear(Int4Linear):
    """Int4Linear split along N (output features) over the ranks of a process group.

    Rank r holds rows sizes[0] + ... + sizes[r-1] onward of the weight (and of the
    bias); its input is the whole x. With gather_output=True the ranks all-gather
    their output columns into the whole y [.., global_out_features]; with
    gather_output=False each keeps its slice [.., out_features] (Megatron's
    column-parallel layer feeding a row-parallel one with input_is_parallel=True).

    out_features is this rank's share; global_out_features the whole layer's.
    state_dict holds this rank's shard in the wire format (a per-rank checkpoint).
    sizes: rows per rank, default int4mm.parallel.split_n (torch.tensor_split: uneven allowed).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, group_size: int = 128,
                 inner_k_tiles: int = 8, gather_output: bool = True, group=None,
                 sizes: Optional[List[int]] = None, device=None, dtype: torch.dtype = torch.bfloat16) -> None:
        from . import parallel

        world_size, rank = _group_info("ColumnParallelInt4Linear", group)
        if sizes is None:
            sizes = parallel.split_n(out_features, world_size)
        else:
            sizes = parallel._check_sizes("ColumnParallelInt4Linear", sizes, out_features, "out_features",
                                          world_size)
        super().__init__(in_features, sizes[rank], bias=bias, group_size=group_size,
                         inner_k_tiles=inner_k_tiles, device=device, dtype=dtype)
        self.global_out_features = out_features
        self.gather_output = gather_output
        self.group, self.world_size, self.rank = group, world_size, rank
        self.sizes = tuple(sizes)
        self.start = sum(sizes[:rank])

    @classmethod
    def from_int4linear(cls, linear: Int4Linear, gather_output: bool = True, group=None,
                        sizes: Optional[List[int]] = None) -> "ColumnParallelInt4Linear":
        """This rank's shard of a whole Int4Linear (same device), sharded on the wire format before packing."""
        from . import parallel

        module = cls(linear.in_features, linear.out_features, bias=linear.bias is not None,
                     group_size=linear.group_size, inner_k_tiles=linear.inner_k_tiles,
                     gather_output=gather_output, group=group, sizes=sizes, device="meta",
                     dtype=linear.scales_and_zeros.dtype)
        shard = parallel.shard_n(linear.weight, linear.scales_and_zeros, module.world_size, module.sizes)[module.rank]
        module.weight, module.scales_and_zeros = _own(shard.q), _own(shard.scales_and_zeros)
        if linear.bias is not None:
            module.bias = nn.Parameter(_own(linear.bias.detach()[shard.start:shard.stop]), requires_grad=False)
        module._repack()
        return module

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int = 128, quantizer: Quantizer = "stored_rounded",
                    inner_k_tiles: int = 8, gather_output: bool = True, group=None,
                    sizes: Optional[List[int]] = None) -> "ColumnParallelInt4Linear":
        """Quantizes only this rank's rows of linear.weight (a row's groups do not depend on other rows)."""
        module = cls(linear.in_features, linear.out_features, bias=linear.bias is not None,
                     group_size=group_size, inner_k_tiles=inner_k_tiles, gather_output=gather_output,
                     group=group, sizes=sizes, device="meta", dtype=linear.weight.dtype)
        rows = slice(module.start, module.start + module.out_features)
        part = _sub_linear(linear, rows, slice(None), bias=True)
        module.weight, module.scales_and_zeros = _quantize(part.weight.detach(), group_size, quantizer)
        if part.bias is not None:
            module.bias = nn.Parameter(_own(part.bias.detach()), requires_grad=False)
        module._repack()
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)  # [.., out_features], this rank's columns, bias included
        if not self.gather_output or self.world_size == 1:
            return y
        return _all_gather_last_dim(y, self.sizes, self.group)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, global_out_features={self.global_out_features}, "
                f"rank={self.rank}/{self.world_size}, gather_output={self.gather_output}")


def _all_gather_last_dim(y: torch.Tensor, sizes, group) -> torch.Tensor:
    """Concatenates every rank's y [.., sizes[r]] along the last dim, on every rank."""
    import torch.distributed as dist

    width = max(sizes)
    y = y.contiguous()
    if y.shape[-1] < width:  # collectives move equal sizes: pad the short shards, cut after
        y = torch.nn.functional.pad(y, (0, width - y.shape[-1]))
    parts = [torch.empty_like(y) for _ in sizes]
    dist.all_gather(parts, y, group=group)
    if all(s == width for s in sizes):
        return torch.cat(parts, dim=-1)
    return torch.cat([p[..., :s] for p, s in zip(parts, sizes)], dim=-1)


class RowParallelInt4Linear(Int4Linear):
    """Int4Linear split along K (input features), at group boundaries, over the ranks of a process group.

    Rank r multiplies its K slice of x by its K slice of the weight; the partial
    outputs [.., out_features] are all-reduced (summed) and the bias, held whole
    by every rank, is added once after the reduce. input_is_parallel=True: x is
    already this rank's slice [.., in_features] (the output of a column-parallel
    layer with gather_output=False); False: x is whole [.., global_in_features]
    and each rank takes its slice.

    The partial outputs are rounded to the activation dtype by the kernel and
    summed in reduce_dtype (default: the activation dtype, as Megatron does;
    torch.float32 halves the rounding error of the sum for twice the bytes).
    in_features is this rank's share; global_in_features the whole layer's.
    sizes: K per rank, each a multiple of group_size, default int4mm.parallel.split_k.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, group_size: int = 128,
                 inner_k_tiles: int = 8, input_is_parallel: bool = False, group=None,
                 sizes: Optional[List[int]] = None, reduce_dtype: Optional[torch.dtype] = None,
                 device=None, dtype: torch.dtype = torch.bfloat16) -> None:
        from . import parallel

        world_size, rank = _group_info("RowParallelInt4Linear", group)
        if sizes is None:
            sizes = parallel.split_k(in_features, group_size, world_size)
        else:
            sizes = parallel._check_sizes("RowParallelInt4Linear", sizes, in_features, "in_features",
                                          world_size, group_size, "group_size")
        super().__init__(sizes[rank], out_features, bias=bias, group_size=group_size,
                         inner_k_tiles=inner_k_tiles, device=device, dtype=dtype)
        self.global_in_features = in_features
        self.input_is_parallel = input_is_parallel
        self.reduce_dtype = reduce_dtype
        self.group, self.world_size, self.rank = group, world_size, rank
        self.sizes = tuple(sizes)
        self.start = sum(sizes[:rank])

    @classmethod
    def from_int4linear(cls, linear: Int4Linear, input_is_parallel: bool = False, group=None,
                        sizes: Optional[List[int]] = None,
                        reduce_dtype: Optional[torch.dtype] = None) -> "RowParallelInt4Linear":
        """This rank's shard of a whole Int4Linear (same device), sharded on the wire format before packing."""
        from . import parallel

        module = cls(linear.in_features, linear.out_features, bias=linear.bias is not None,
                     group_size=linear.group_size, inner_k_tiles=linear.inner_k_tiles,
                     input_is_parallel=input_is_parallel, group=group, sizes=sizes,
                     reduce_dtype=reduce_dtype, device="meta", dtype=linear.scales_and_zeros.dtype)
        shard = parallel.shard_k(linear.weight, linear.scales_and_zeros, linear.group_size,
                                 module.world_size, module.sizes)[module.rank]
        module.weight, module.scales_and_zeros = _own(shard.q), _own(shard.scales_and_zeros)
        if linear.bias is not None:
            module.bias = nn.Parameter(_own(linear.bias.detach()), requires_grad=False)
        module._repack()
        return module

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int = 128, quantizer: Quantizer = "stored_rounded",
                    inner_k_tiles: int = 8, input_is_parallel: bool = False, group=None,
                    sizes: Optional[List[int]] = None,
                    reduce_dtype: Optional[torch.dtype] = None) -> "RowParallelInt4Linear":
        """Quantizes only this rank's K slice of linear.weight (whole groups: the same q and scales)."""
        module = cls(linear.in_features, linear.out_features, bias=linear.bias is not None,
                     group_size=group_size, inner_k_tiles=inner_k_tiles, input_is_parallel=input_is_parallel,
                     group=group, sizes=sizes, reduce_dtype=reduce_dtype, device="meta",
                     dtype=linear.weight.dtype)
        part = _sub_linear(linear, slice(None), slice(module.start, module.start + module.in_features), bias=False)
        module.weight, module.scales_and_zeros = _quantize(part.weight.detach(), group_size, quantizer)
        if linear.bias is not None:
            module.bias = nn.Parameter(_own(linear.bias.detach()), requires_grad=False)
        module._repack()
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        if not self.input_is_parallel:
            x = x[..., self.start:self.start + self.in_features]
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        if _is_compiling():
            y = torch.ops.int4mm.weight_int4pack_mm(x2, self.packed, self.group_size, self.scales_and_zeros)
        else:
            y = _torch_ops.weight_int4pack_mm_eager(x2, self.packed, self.group_size, self.scales_and_zeros)
        y = y.reshape(*lead, self.out_features)
        if self.world_size > 1:
            if self.reduce_dtype is not None and self.reduce_dtype != y.dtype:
                y = y.to(self.reduce_dtype)
            dist.all_reduce(y, group=self.group)
        if self.bias is not None:
            y = y + self.bias  # once, after the reduce
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, global_in_features={self.global_in_features}, "
                f"rank={self.rank}/{self.world_size}, input_is_parallel={self.input_is_parallel}")
