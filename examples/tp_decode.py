"""Decode speed of a Llama-architecture int4 model under tensor parallelism: TP = 1, 2, 4, 8 in one run.

Launched by torchrun, one process per GPU (NCCL) or per CPU share (gloo).
For each TP degree t in --tp (default 1 and every power of two up to the number
of processes), ranks 0..t-1 build the same transformers LlamaForCausalLM from
a config (random weights, same seed), shard it with
int4mm.parallel.shard_model_ (q/k/v, gate/up column-parallel; o, down
row-parallel; lm_head column-parallel and gathered; each rank quantizes only
its shard, group 128) and time greedy decoding (batch 1, KV cache), while the
other ranks wait. Every TP degree is fed TP=1's tokens; 'top-1 = TP1' is the
share of steps whose greedy token equals TP=1's (bf16 reductions in another
order may flip near-ties of random-weight logits). Rank 0 prints one table and
a JSON line.

    # several GPUs (NVLink multicast off, see docs/parallel.md):
    NCCL_NVLS_ENABLE=0 torchrun --nproc_per_node 2 examples/tp_decode.py --config 8b --new-tokens 64
    NCCL_NVLS_ENABLE=0 torchrun --nproc_per_node 8 examples/tp_decode.py --config 8b --new-tokens 64
    # CPU, gloo:
    torchrun --nproc_per_node 2 examples/tp_decode.py --device cpu --config small --layers 2
"""

import argparse
import datetime
import json
import os
import sys
import time

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_decode import CONFIGS, build_model, decode  # noqa: E402  (same models, same decode loop)

import int4mm  # noqa: E402
from int4mm import parallel  # noqa: E402


def int4_mib(model):
    """MiB of int4 weights and scales_and_zeros on this rank."""
    total = 0
    for m in model.modules():
        if isinstance(m, int4mm.nn.Int4Linear):
            total += m.weight.numel() + m.scales_and_zeros.numel() * m.scales_and_zeros.element_size()
    return total / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="small")
    parser.add_argument("--layers", type=int, default=0, help="override the number of decoder layers")
    parser.add_argument("--tp", default="", help="comma-separated TP degrees (default: 1, 2, 4, .. <= processes)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16")
    parser.add_argument("--group-size", type=int, default=128)
    parser.add_argument("--prompt", type=int, default=16, help="prompt length (random token ids)")
    parser.add_argument("--new-tokens", type=int, default=32, help="timed decode steps")
    parser.add_argument("--warmup", type=int, default=4, help="untimed decode steps first")
    args = parser.parse_args()

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")  # also runs as a plain `python` (world 1)
    os.environ.setdefault("MASTER_PORT", "29533")
    if args.device == "cuda":
        device, backend = torch.device("cuda", local_rank), "nccl"
        torch.cuda.set_device(device)
    else:
        device, backend = torch.device("cpu"), "gloo"
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group(backend, rank=rank, world_size=world, timeout=datetime.timedelta(minutes=10))
    tps = [int(t) for t in args.tp.split(",")] if args.tp else [t for t in (1, 2, 4, 8, 16) if t <= world]
    if max(tps) > world:
        raise SystemExit(f"--tp {args.tp}: needs {max(tps)} processes, torchrun started {world}")
    groups = {t: dist.new_group(list(range(t))) for t in tps}  # every rank creates every group
    dtype = getattr(torch, args.dtype)

    rows, forced = [], None
    for t in tps:
        if rank < t:
            torch.manual_seed(0)
            model, config = build_model(args, device, dtype)
            start = time.perf_counter()
            report = parallel.shard_model_(model, group=groups[t], group_size=args.group_size)
            shard_s = time.perf_counter() - start
            prompt = torch.randint(0, config.vocab_size, (1, args.prompt), device=device,
                                   generator=torch.Generator(device=device).manual_seed(1))
            decode(model, prompt, args.new_tokens, args.warmup, device, forced)  # untimed: clocks, caches
            tps_, tokens = decode(model, prompt, args.new_tokens, args.warmup, device, forced)
            if rank == 0:
                if forced is None:
                    forced = tokens
                agree = sum(a == b for a, b in zip(tokens, forced)) / len(forced)
                rows.append({"tp": t, "tokens_per_s": tps_, "ms_per_token": 1000 / tps_,
                             "int4_mib_per_rank": int4_mib(model), "top1_equal_tp1": agree,
                             "shard_s": shard_s, "sharded_layers": len(report.column) + len(report.gathered)
                             + len(report.row)})
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()
        if t == tps[0]:  # everyone decodes with the first degree's tokens
            box = [forced]
            dist.broadcast_object_list(box, src=0)
            forced = box[0]
        dist.barrier()

    if rank == 0:
        name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                else f"cpu ({torch.get_num_threads()} threads per rank)")
        hidden, inter, layers, heads, kv_heads, vocab = CONFIGS[args.config]
        print(f"LlamaForCausalLM '{args.config}': hidden {hidden}, intermediate {inter}, "
              f"{args.layers or layers} layers, heads {heads}/{kv_heads} kv, vocab {vocab}; {args.dtype}, "
              f"int4 group {args.group_size}; {backend} on {world} x {name}; batch 1, prompt {args.prompt}, "
              f"{args.new_tokens} timed tokens; torch {torch.__version__}")
        base = rows[0]["tokens_per_s"]
        print(f"\n{'TP':>3} {'tokens/s':>10} {'ms/token':>10} {'vs TP' + str(rows[0]['tp']):>8} "
              f"{'int4 MiB/rank':>14} {'top-1 = TP' + str(rows[0]['tp']):>14}")
        for r in rows:
            print(f"{r['tp']:>3} {r['tokens_per_s']:>10.1f} {r['ms_per_token']:>10.2f} "
                  f"{r['tokens_per_s'] / base:>7.2f}x {r['int4_mib_per_rank']:>14.1f} {r['top1_equal_tp1']:>13.0%}")
        print(json.dumps({"config": args.config, "layers": args.layers or layers, "dtype": args.dtype,
                          "backend": backend, "device": name, "rows": rows}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
