"""Tensor parallelism for int4 layers: shard a quantized weight, and a whole model, over ranks.

A linear layer's quantized weight travels in PyTorch's wire format (docs/contract.md):

    q                 uint8 [N, K/2]  (or int32 [N, K])   byte j of row n = q[n][2j] << 4 | q[n][2j+1]
    scales_and_zeros  [K/group_size, N, 2]

It is sharded in that format, before packing, so that each rank packs (and,
with from_linear, quantizes) only its own part; the packed layout is the
backend's and never crosses ranks.

    split along N (column-parallel)           split along K (row-parallel)
    rank r: rows n0:n1 of q,                  rank r: bytes k0/2:k1/2 of every row of q,
            columns n0:n1 of scales_and_zeros         groups k0/g:k1/g of scales_and_zeros

               K                                          K
          +---------+                           +-----+-----+
      N   | rank 0  |  -> y[:, n0:n1]        N  |  0  |  1  |  -> partial y, all-reduced
          +---------+                           +-----+-----+
          | rank 1  |                              ^ only at group boundaries: a group's
          +---------+                                scale and zero belong to one rank

N splits may be uneven: `split_n` follows torch.tensor_split (the first N % R
ranks get one more row). K splits move whole groups: `split_k` hands out the
K/group_size groups the same way, and explicit K sizes that are not multiples
of group_size are an error. Both return views (no copy); concatenating the
shards in rank order gives back the original bit for bit (`unshard_n`, `unshard_k`).

The functions here take numpy, torch or cupy arrays and need no torch.
`shard_model_` (torch) swaps a Llama-architecture model's Int4Linear (or
nn.Linear) projections for int4mm.nn.ColumnParallelInt4Linear and
RowParallelInt4Linear, Megatron-style. See docs/parallel.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from .ops import Int4mmError, _dtype_name, _framework

_GROUP_SIZES = (32, 64, 128, 256)


class Shard(NamedTuple):
    """One rank's part of a quantized weight: views of q and scales_and_zeros, and where it sits."""

    q: Any                 # uint8 [n1-n0, K/2] or int32 [n1-n0, K]  (N split); [N, (k1-k0)/2] or [N, k1-k0]  (K split)
    scales_and_zeros: Any  # [K/g, n1-n0, 2]  (N split); [(k1-k0)/g, N, 2]  (K split)
    start: int             # n0 or k0
    stop: int              # n1 or k1


# ---------------------------------------------------------------------------
# Split sizes
# ---------------------------------------------------------------------------


def _tensor_split_sizes(total: int, parts: int) -> List[int]:
    """torch.tensor_split's sizes: the first total % parts parts get one more."""
    base, extra = divmod(total, parts)
    return [base + (1 if r < extra else 0) for r in range(parts)]


def _check_world_size(op: str, world_size: int) -> None:
    if not isinstance(world_size, int) or world_size < 1:
        raise Int4mmError(f"{op}: world_size must be an integer >= 1, got {world_size!r}")


def split_n(n: int, world_size: int) -> List[int]:
    """Rows of N per rank, as torch.tensor_split: split_n(99, 2) = [50, 49]. Every rank gets >= 1."""
    _check_world_size("split_n", world_size)
    if n < world_size:
        raise Int4mmError(f"split_n: N={n} cannot be split over world_size={world_size} ranks "
                          f"(a rank would get no output rows)")
    return _tensor_split_sizes(n, world_size)


def split_k(k: int, group_size: int, world_size: int) -> List[int]:
    """K per rank in whole groups, the K/group_size groups split as torch.tensor_split.

    split_k(320, 64, 2) = [192, 128] (5 groups: 3 and 2).
    """
    _check_world_size("split_k", world_size)
    if group_size not in _GROUP_SIZES:
        raise Int4mmError(f"split_k: group_size must be one of {_GROUP_SIZES}, got {group_size}")
    if k % group_size != 0:
        raise Int4mmError(f"split_k: K must be a multiple of group_size={group_size}, got {k}")
    groups = k // group_size
    if groups < world_size:
        raise Int4mmError(f"split_k: K={k} has {groups} groups of group_size={group_size}, fewer than "
                          f"world_size={world_size} ranks (a rank would get no groups)")
    return [gs * group_size for gs in _tensor_split_sizes(groups, world_size)]


def _check_sizes(op: str, sizes: Sequence[int], total: int, total_name: str, world_size: int,
                 multiple_of: int = 1, multiple_name: str = "") -> List[int]:
    sizes = [int(s) for s in sizes]
    if len(sizes) != world_size:
        raise Int4mmError(f"{op}: sizes must have world_size={world_size} entries, got {len(sizes)}: {sizes}")
    for r, s in enumerate(sizes):
        if s < 1:
            raise Int4mmError(f"{op}: sizes[{r}] must be >= 1, got {s} (sizes={sizes})")
        if s % multiple_of != 0:
            raise Int4mmError(f"{op}: sizes[{r}]={s} is not a multiple of {multiple_name}={multiple_of}: "
                              f"a K shard must hold whole groups (sizes={sizes})")
    if sum(sizes) != total:
        raise Int4mmError(f"{op}: sizes must add up to {total_name}={total}, got sum({sizes}) = {sum(sizes)}")
    return sizes


def _offsets(sizes: Sequence[int]) -> List[Tuple[int, int]]:
    bounds, start = [], 0
    for s in sizes:
        bounds.append((start, start + s))
        start += s
    return bounds


# ---------------------------------------------------------------------------
# Sharding the wire format
# ---------------------------------------------------------------------------


def _q_nk(op: str, q: Any) -> Tuple[int, int, int]:
    """(N, K, values of k per element of q's last axis: 2 for uint8 wire, 1 for int32)."""
    _framework(q)
    dtype = _dtype_name(q)
    if len(q.shape) != 2 or dtype not in ("uint8", "int32"):
        raise Int4mmError(f"{op}: q must be uint8 [N, K/2] (wire format) or int32 [N, K], "
                          f"got {dtype} {list(q.shape)}")
    per = 2 if dtype == "uint8" else 1
    return int(q.shape[0]), int(q.shape[1]) * per, per


def _check_scales_and_zeros(op: str, sz: Any, groups: int, n: int) -> None:
    """sz must be [groups, n, 2] (groups = 0: any number of groups)."""
    _framework(sz)
    shape = [int(s) for s in sz.shape]
    if len(shape) != 3 or shape[1] != n or shape[2] != 2 or (groups and shape[0] != groups):
        expected = f"[K/group_size={groups}, N={n}, 2]" if groups else f"[K/group_size, N={n}, 2]"
        raise Int4mmError(f"{op}: scales_and_zeros must be {expected}, got {shape}")


def shard_n(q: Any, scales_and_zeros: Any, world_size: int,
            sizes: Optional[Sequence[int]] = None) -> List[Shard]:
    """Splits a quantized weight along N (output features) for column-parallel layers.

    sizes: rows per rank (default split_n(N, world_size); uneven splits allowed).
    Returns one Shard of views per rank; the bias, if any, splits the same way.
    """
    op = "shard_n"
    _check_world_size(op, world_size)
    n, k, _ = _q_nk(op, q)
    _check_scales_and_zeros(op, scales_and_zeros, 0, n)
    if int(scales_and_zeros.shape[0]) < 1 or k % int(scales_and_zeros.shape[0]) != 0:
        raise Int4mmError(f"{op}: scales_and_zeros.shape[0] must be K/group_size, a divisor of K={k}, "
                          f"got {int(scales_and_zeros.shape[0])}")
    sizes = split_n(n, world_size) if sizes is None else _check_sizes(op, sizes, n, "N", world_size)
    return [Shard(q[n0:n1], scales_and_zeros[:, n0:n1], n0, n1) for n0, n1 in _offsets(sizes)]


def shard_k(q: Any, scales_and_zeros: Any, group_size: int, world_size: int,
            sizes: Optional[Sequence[int]] = None) -> List[Shard]:
    """Splits a quantized weight along K (input features) for row-parallel layers, at group boundaries.

    sizes: K per rank, each a multiple of group_size (default split_k(K, group_size, world_size)).
    Returns one Shard of views per rank. A bias is not split: it is added once, after the all-reduce.
    """
    op = "shard_k"
    _check_world_size(op, world_size)
    if group_size not in _GROUP_SIZES:
        raise Int4mmError(f"{op}: group_size must be one of {_GROUP_SIZES}, got {group_size}")
    n, k, per = _q_nk(op, q)
    if k % group_size != 0:
        raise Int4mmError(f"{op}: K must be a multiple of group_size={group_size}, got K={k}")
    _check_scales_and_zeros(op, scales_and_zeros, k // group_size, n)
    sizes = (split_k(k, group_size, world_size) if sizes is None
             else _check_sizes(op, sizes, k, "K", world_size, group_size, "group_size"))
    # k0 is a multiple of group_size (even), so a K split never cuts a byte of the wire format.
    return [Shard(q[:, k0 // per:k1 // per], scales_and_zeros[k0 // group_size:k1 // group_size], k0, k1)
            for k0, k1 in _offsets(sizes)]


def _cat(arrays: Sequence[Any], axis: int) -> Any:
    fw = _framework(arrays[0])
    if fw == "torch":
        import torch
        return torch.cat(list(arrays), dim=axis)
    if fw == "cupy":
        import cupy
        return cupy.concatenate(list(arrays), axis=axis)
    import numpy as np
    return np.concatenate(list(arrays), axis=axis)


def unshard_n(shards: Sequence[Any]) -> Tuple[Any, Any]:
    """(q, scales_and_zeros) from shard_n's shards (or (q, scales_and_zeros) pairs), in rank order."""
    return _cat([s[0] for s in shards], 0), _cat([s[1] for s in shards], 1)


def unshard_k(shards: Sequence[Any]) -> Tuple[Any, Any]:
    """(q, scales_and_zeros) from shard_k's shards (or (q, scales_and_zeros) pairs), in rank order."""
    return _cat([s[0] for s in shards], 1), _cat([s[1] for s in shards], 0)


# ---------------------------------------------------------------------------
# Sharding a model (torch)
# ---------------------------------------------------------------------------

_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
_MLP = ("gate_proj", "up_proj", "down_proj")


@dataclass
class ShardReport:
    """What shard_model_ did on this rank."""

    world_size: int = 1
    rank: int = 0
    column: List[str] = field(default_factory=list)       # ColumnParallelInt4Linear, outputs left sharded
    gathered: List[str] = field(default_factory=list)     # ColumnParallelInt4Linear with gather_output=True
    row: List[str] = field(default_factory=list)          # RowParallelInt4Linear, input_is_parallel=True
    attributes: Dict[str, Tuple[int, int]] = field(default_factory=dict)  # "attn.num_heads": (before, after)
    replicated: List[str] = field(default_factory=list)   # linear layers left whole on every rank
    bytes_before: int = 0  # int4 weight + scales_and_zeros bytes of the sharded layers, whole
    bytes_after: int = 0   # ... and this rank's part of them

    def __str__(self) -> str:
        lines = [f"int4mm.parallel.shard_model_: rank {self.rank} of {self.world_size}: "
                 f"{len(self.column) + len(self.gathered)} column-parallel ({len(self.gathered)} gathered), "
                 f"{len(self.row)} row-parallel, {len(self.replicated)} replicated; "
                 f"sharded weights {self.bytes_before / 2**20:.1f} MiB -> {self.bytes_after / 2**20:.1f} MiB "
                 f"on this rank"]
        lines += [f"  {name}: {before} -> {after}" for name, (before, after) in self.attributes.items()]
        lines += [f"  replicated {name}" for name in self.replicated]
        return "\n".join(lines)


def _first_int(*values):
    for v in values:
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return None


def shard_model_(model, group=None, lm_head: bool = True, group_size: int = 128,
                 quantizer="stored_rounded", inner_k_tiles: int = 8, verbose: bool = False) -> ShardReport:
    """Shards, in place, a Llama-architecture model for tensor parallelism over `group` (default: WORLD).

    Every module with children q_proj, k_proj, v_proj, o_proj (attention) or
    gate_proj, up_proj, down_proj (MLP) is sharded the Megatron way:
      q/k/v_proj, gate/up_proj  ColumnParallelInt4Linear, gather_output=False: each rank
                                keeps num_heads/R heads (q) and num_key_value_heads/R (k, v),
                                and a slice of the intermediate size (gate, up)
      o_proj, down_proj         RowParallelInt4Linear, input_is_parallel=True: partial
                                outputs all-reduced, bias added once after the reduce
      lm_head (if lm_head)      ColumnParallelInt4Linear, gather_output=True
    Everything else (embeddings, norms) stays whole on every rank. The attention
    module's head-count attributes (num_heads, num_attention_heads,
    num_key_value_heads, and hidden_size where it is num_heads * head_dim) are set
    to this rank's values; its config is left alone (transformers >= 4.48 reads
    head counts from the projections' shapes).

    Projections may be Int4Linear (from int4mm.quantize_) or nn.Linear, which is
    then quantized here (group_size, quantizer, inner_k_tiles), each rank
    quantizing only its shard. All checks run before anything is changed: a model
    that cannot be sharded (heads not divisible by the world size, a head split
    not at group boundaries, a projection of another type) raises Int4mmError and
    is left as it was. Every rank must call this with the same model.
    """
    from torch import nn as torch_nn

    from .nn import ColumnParallelInt4Linear, Int4Linear, RowParallelInt4Linear, _group_info

    op = "shard_model_"
    world_size, rank = _group_info(op, group)
    modules = dict(model.named_modules())

    def linear(parent: str, child: str):
        name = f"{parent}.{child}" if parent else child
        module = modules[name]
        if isinstance(module, (ColumnParallelInt4Linear, RowParallelInt4Linear)):
            raise Int4mmError(f"{op}: {name} is already sharded ({type(module).__name__})")
        if type(module) is not Int4Linear and not isinstance(module, torch_nn.Linear):
            raise Int4mmError(f"{op}: {name} must be an int4mm.nn.Int4Linear or an nn.Linear, "
                              f"got {type(module).__name__}")
        return name, module

    def k_group_size(module) -> int:
        return module.group_size if isinstance(module, Int4Linear) else group_size

    # Plan: (name, module, kind, sizes) for every layer, and attribute changes; nothing is changed yet.
    plan: List[Tuple[str, Any, str, List[int]]] = []
    attributes: List[Tuple[Any, str, str, int, int]] = []
    for prefix, module in modules.items():
        children = dict(module.named_children())
        if all(c in children for c in _ATTENTION):
            (qn, q), (kn, k), (vn, v), (on, o) = (linear(prefix, c) for c in _ATTENTION)
            config = getattr(module, "config", None)
            heads = _first_int(getattr(module, "num_heads", None), getattr(module, "num_attention_heads", None),
                               getattr(config, "num_attention_heads", None))
            if heads is None:
                raise Int4mmError(f"{op}: {prefix}: cannot find the number of attention heads "
                                  f"(no attribute num_heads, num_attention_heads or config.num_attention_heads)")
            kv_heads = _first_int(getattr(module, "num_key_value_heads", None),
                                  getattr(config, "num_key_value_heads", None), heads)
            head_dim = _first_int(getattr(module, "head_dim", None)) or q.out_features // heads
            for what, count in (("num_attention_heads", heads), ("num_key_value_heads", kv_heads)):
                if count % world_size != 0:
                    raise Int4mmError(f"{op}: {prefix}: {what}={count} is not divisible by "
                                      f"world_size={world_size}: attention heads cannot be split evenly")
            for name, layer, count in ((qn, q, heads), (kn, k, kv_heads), (vn, v, kv_heads)):
                if layer.out_features != count * head_dim:
                    raise Int4mmError(f"{op}: {name}: out_features must be heads * head_dim = "
                                      f"{count} * {head_dim} = {count * head_dim}, got {layer.out_features}")
            if o.in_features != heads * head_dim:
                raise Int4mmError(f"{op}: {on}: in_features must be num_attention_heads * head_dim = "
                                  f"{heads * head_dim}, got {o.in_features}")
            local_heads, local_kv = heads // world_size, kv_heads // world_size
            o_sizes = [local_heads * head_dim] * world_size
            _check_sizes(f"{op}: {on}", o_sizes, o.in_features, "in_features", world_size,
                         k_group_size(o), "group_size")
            plan += [(qn, q, "column", [local_heads * head_dim] * world_size),
                     (kn, k, "column", [local_kv * head_dim] * world_size),
                     (vn, v, "column", [local_kv * head_dim] * world_size),
                     (on, o, "row", o_sizes)]
            for attr, before, after in (("num_heads", heads, local_heads),
                                        ("num_attention_heads", heads, local_heads),
                                        ("num_key_value_heads", kv_heads, local_kv),
                                        ("hidden_size", heads * head_dim, local_heads * head_dim)):
                if getattr(module, attr, None) == before and isinstance(before, int):
                    attributes.append((module, prefix, attr, before, after))
        elif all(c in children for c in _MLP):
            (gn, g), (un, u), (dn, d) = (linear(prefix, c) for c in _MLP)
            if not g.out_features == u.out_features == d.in_features:
                raise Int4mmError(f"{op}: {prefix}: gate_proj.out_features={g.out_features}, "
                                  f"up_proj.out_features={u.out_features} and down_proj.in_features="
                                  f"{d.in_features} must be equal")
            sizes = split_k(d.in_features, k_group_size(d), world_size)  # whole groups of down_proj
            plan += [(gn, g, "column", sizes), (un, u, "column", sizes), (dn, d, "row", sizes)]
    if lm_head and "lm_head" in modules:
        name, head = linear("", "lm_head")
        plan.append((name, head, "gathered", split_n(head.out_features, world_size)))

    report = ShardReport(world_size=world_size, rank=rank)
    planned = {name for name, *_ in plan}

    def weight_bytes(m) -> int:
        if isinstance(m, Int4Linear):
            return m.weight.numel() + m.scales_and_zeros.numel() * m.scales_and_zeros.element_size()
        return m.weight.numel() * m.weight.element_size()

    for name, module, kind, sizes in plan:
        cls = RowParallelInt4Linear if kind == "row" else ColumnParallelInt4Linear
        options = {"input_is_parallel": True} if kind == "row" else {"gather_output": kind == "gathered"}
        if isinstance(module, Int4Linear):
            replacement = cls.from_int4linear(module, group=group, sizes=sizes, **options)
        else:
            replacement = cls.from_linear(module, group_size=group_size, quantizer=quantizer,
                                          inner_k_tiles=inner_k_tiles, group=group, sizes=sizes, **options)
        report.bytes_before += weight_bytes(module)
        report.bytes_after += weight_bytes(replacement)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, replacement)
        getattr(report, kind).append(name)
    for module, prefix, attr, before, after in attributes:
        setattr(module, attr, after)
        report.attributes[f"{prefix}.{attr}"] = (before, after)
    report.replicated = [name for name, m in modules.items()
                         if isinstance(m, (Int4Linear, torch_nn.Linear)) and name not in planned]
    if verbose:
        print(report)
    return report
