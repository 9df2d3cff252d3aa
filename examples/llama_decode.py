"""Decode speed of a Llama-architecture model: bf16 vs int4mm vs PyTorch's own int4 ops.

Builds transformers' LlamaForCausalLM from a config (random weights: no
checkpoint is needed), then times greedy decoding (batch 1, KV cache) with:

  bf16          the model as built (nn.Linear in --dtype)
  int4mm        every nn.Linear swapped by int4mm.quantize_ (Int4Linear, group 128)
  torch-int4    the same quantized weights through torch._weight_int4pack_mm
                (CUDA) or torch._weight_int4pack_mm_for_cpu (CPU), where this
                torch has them

and prints one table. The int4 variants share q and scales_and_zeros, so their
outputs differ only by kernel rounding. 'top-1 = bf16' ('= int4mm') is the
share of steps whose greedy token equals bf16's (int4mm's), every variant
being fed bf16's tokens. With random weights the logits are nearly flat, so
agreement with bf16 is low; the int4 variants should agree with each other.

    pip install . transformers
    python examples/llama_decode.py                              # small config, CUDA if present
    python examples/llama_decode.py --config 8b --new-tokens 64  # Llama-3-8B layer shapes
    python examples/llama_decode.py --config 8b --layers 8 --device cpu
"""

import argparse
import inspect
import time

import torch
from torch import nn

import int4mm

CONFIGS = {
    # name: hidden, intermediate, layers, heads, kv heads, vocab
    "small": (1024, 2816, 4, 16, 4, 32000),
    "1b": (2048, 5632, 22, 32, 4, 32000),  # TinyLlama-1.1B
    "8b": (4096, 14336, 32, 32, 8, 128256),  # Llama-3-8B
}


class TorchInt4Linear(nn.Module):
    """A linear layer on PyTorch's own int4 ops (tinygemm on CUDA, _for_cpu on the CPU)."""

    def __init__(self, wire, scales_and_zeros, bias, group_size):
        super().__init__()
        self.group_size = group_size
        self.out_features = wire.shape[0]
        self.scales_and_zeros = scales_and_zeros
        self.bias = bias
        if wire.device.type == "cuda":  # takes PyTorch's uint8 wire format [N, K/2]
            self.packed = torch._convert_weight_to_int4pack(wire, 8)
            self.mm = torch._weight_int4pack_mm
        else:  # takes int32 [N, K]: the reference backend's "packed" layout is the wire format
            q = int4mm.unpack(wire, wire.shape[0], 2 * wire.shape[1], backend="reference")
            self.packed = torch._convert_weight_to_int4pack_for_cpu(q, 8)
            self.mm = torch._weight_int4pack_mm_for_cpu

    def forward(self, x):
        y = self.mm(x.reshape(-1, x.shape[-1]), self.packed, self.group_size, self.scales_and_zeros)
        y = y.reshape(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias


def torch_int4_available(device, dtype):
    if device.type == "cuda":
        return hasattr(torch, "_weight_int4pack_mm") and dtype == torch.bfloat16
    return hasattr(torch, "_weight_int4pack_mm_for_cpu")


def build_model(args, device, dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden, inter, layers, heads, kv_heads, vocab = CONFIGS[args.config]
    config = LlamaConfig(hidden_size=hidden, intermediate_size=inter,
                         num_hidden_layers=args.layers or layers, num_attention_heads=heads,
                         num_key_value_heads=kv_heads, vocab_size=vocab,
                         max_position_embeddings=args.prompt + args.new_tokens + args.warmup + 16)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default_dtype)
    return model.eval(), config


def _cache_name(model):
    """The KV-cache keyword of this transformers version: `cache` (5.x) or `past_key_values`."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.inference_mode()
def decode(model, prompt, steps, warmup, device, forced=None):
    """Greedy-decodes warmup + steps tokens after the prompt; returns (tokens/s, argmax tokens).

    With `forced` (another run's tokens), those are fed back instead of this
    run's own argmax, so that each step's top-1 is compared on the same history.
    """
    name = _cache_name(model)
    out = model(prompt, use_cache=True)
    cache, token = getattr(out, name), out.logits[:, -1:].argmax(-1)
    tokens = [int(token)]
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        if forced is not None:
            token = torch.full_like(token, forced[i])
        out = model(token, use_cache=True, **{name: cache})
        cache, token = getattr(out, name), out.logits[:, -1:].argmax(-1)
        tokens.append(int(token))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start), tokens


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="small")
    parser.add_argument("--layers", type=int, default=0, help="override the number of decoder layers")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16")
    parser.add_argument("--group-size", type=int, default=128)
    parser.add_argument("--prompt", type=int, default=16, help="prompt length (random token ids)")
    parser.add_argument("--new-tokens", type=int, default=32, help="timed decode steps")
    parser.add_argument("--warmup", type=int, default=4, help="untimed decode steps first")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, config = build_model(args, device, dtype)
    prompt = torch.randint(0, config.vocab_size, (1, args.prompt), device=device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"LlamaForCausalLM '{args.config}': hidden {config.hidden_size}, intermediate "
          f"{config.intermediate_size}, {config.num_hidden_layers} layers, vocab {config.vocab_size}; "
          f"{args.dtype} on {name}; batch 1, prompt {args.prompt}, {args.new_tokens} timed tokens")

    decode(model, prompt, args.new_tokens, args.warmup, device)  # untimed: GPU clocks ramp up from idle
    results = [("bf16" if dtype == torch.bfloat16 else args.dtype,) + decode(model, prompt, args.new_tokens, args.warmup, device)]

    # Quantize every linear once; both int4 variants use the same q and scales_and_zeros.
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    cache = {}

    def quantizer(w, group_size):
        wire, sz = int4mm.group_quantize(w, group_size, q_format="uint8")  # [N, K/2], on w's device
        cache[w.data_ptr()] = (wire, sz)
        return wire, sz

    start = time.perf_counter()
    report = int4mm.quantize_(model, group_size=args.group_size, quantizer=quantizer)
    print(f"{report}  ({time.perf_counter() - start:.1f} s)")
    forced = results[0][2]
    results.append(("int4mm",) + decode(model, prompt, args.new_tokens, args.warmup, device, forced))

    if torch_int4_available(device, dtype):
        for fqn in report.replaced:
            linear = linears[fqn]
            wire, sz = cache.pop(linear.weight.data_ptr())
            parent, _, child = fqn.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child,
                    TorchInt4Linear(wire, sz, linear.bias, args.group_size))
        try:
            results.append(("torch-int4",) + decode(model, prompt, args.new_tokens, args.warmup, device, forced))
        except RuntimeError as e:
            print(f"torch-int4: PyTorch's int4 op refused this case: {str(e).splitlines()[0]}")
    else:
        print(f"torch-int4: this torch has no int4 op for {device.type} {args.dtype}")

    base = results[0][1]
    def agree(x, y):
        return sum(a == b for a, b in zip(x, y)) / len(x)

    print(f"\n{'variant':<12} {'tokens/s':>10} {'ms/token':>10} {'vs bf16':>8} {'top-1 = bf16':>13} {'top-1 = int4mm':>15}")
    for label, tps, tokens in results:
        vs_int4mm = f"{agree(tokens, results[1][2]):.0%}" if label != results[0][0] else "-"
        print(f"{label:<12} {tps:>10.1f} {1000 / tps:>10.2f} {tps / base:>7.2f}x {agree(tokens, forced):>12.0%} {vs_int4mm:>15}")


if __name__ == "__main__":
    main()
