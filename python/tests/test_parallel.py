"""int4mm.parallel and the tensor-parallel layers: exact sharding of the wire format, and
ColumnParallelInt4Linear / RowParallelInt4Linear / shard_model_ on 2 CPU ranks over gloo.

The multi-process part spawns WORLD ranks once per session (a free localhost
port, gloo, one thread each, TIMEOUT_S in all); every rank runs every case in
CASES and records None or the failure's traceback, and one test per case and
rank reads that record. INT4MM_TEST_BACKEND=nccl runs the same cases over
NCCL, rank r on cuda:r (docs/parallel.md). Skipped without torch; the
transformers case skips without transformers.
"""

import datetime
import os
import socket
import traceback

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from torch import nn  # noqa: E402

import int4mm  # noqa: E402
from conftest import SAFETY, UNIT_ROUNDOFF, dequantize_reference, to_f64  # noqa: E402
from int4mm import parallel  # noqa: E402
from int4mm.nn import ColumnParallelInt4Linear, Int4Linear, RowParallelInt4Linear  # noqa: E402

WORLD = 2
BACKEND = os.environ.get("INT4MM_TEST_BACKEND", "gloo")  # or "nccl": WORLD GPUs
DEVICE = "cpu"  # a rank's device: cuda:rank under NCCL (set by _worker)
TIMEOUT_S = 120  # the whole spawn: start, every case, exit (about 15 s on 2 cores)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def quantized(n, k, group_size, q_format, seed=0):
    """(w float32 [N, K], q, scales_and_zeros) for a random W quantized on the host."""
    w = torch.randn(n, k, generator=torch.Generator().manual_seed(seed))
    q, sz = int4mm.group_quantize(w, group_size, q_format=q_format)
    return w, q, sz


# --- sharding the wire format: exact ------------------------------------------------


@pytest.mark.parametrize("framework", ["torch", "numpy"])
@pytest.mark.parametrize("q_format", ["uint8", "int32"])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_shard_n_round_trip_is_exact(framework, q_format, world_size):
    n, k, g = 99, 256, 64
    w, q, sz = quantized(n, k, g, q_format)
    if framework == "numpy":
        q, sz = q.numpy(), sz.numpy()
    shards = parallel.shard_n(q, sz, world_size)
    sizes = [t.shape[0] for t in torch.tensor_split(torch.empty(n), world_size)]
    assert [s.stop - s.start for s in shards] == sizes == parallel.split_n(n, world_size)
    q2, sz2 = parallel.unshard_n(shards)
    assert np.array_equal(np.asarray(q2), np.asarray(q)) and np.array_equal(np.asarray(sz2), np.asarray(sz))
    for s in shards:  # a shard is what quantizing those rows alone gives
        qs, szs = int4mm.group_quantize(w[s.start:s.stop].contiguous(), g, q_format=q_format)
        assert np.array_equal(np.asarray(s.q), qs.numpy())
        assert np.array_equal(np.asarray(s.scales_and_zeros), szs.numpy())


@pytest.mark.parametrize("framework", ["torch", "numpy"])
@pytest.mark.parametrize("q_format", ["uint8", "int32"])
@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
def test_shard_k_round_trip_is_exact(framework, q_format, world_size):
    n, k, g = 19, 320, 64  # 5 groups: uneven over 2 and 3 ranks
    w, q, sz = quantized(n, k, g, q_format)
    if framework == "numpy":
        q, sz = q.numpy(), sz.numpy()
    shards = parallel.shard_k(q, sz, g, world_size)
    groups = [t.shape[0] for t in torch.tensor_split(torch.empty(k // g), world_size)]
    assert [s.stop - s.start for s in shards] == [x * g for x in groups] == parallel.split_k(k, g, world_size)
    q2, sz2 = parallel.unshard_k(shards)
    assert np.array_equal(np.asarray(q2), np.asarray(q)) and np.array_equal(np.asarray(sz2), np.asarray(sz))
    for s in shards:  # whole groups: quantizing the K slice alone gives the same q and scales
        qs, szs = int4mm.group_quantize(w[:, s.start:s.stop].contiguous(), g, q_format=q_format)
        assert np.array_equal(np.asarray(s.q), qs.numpy())
        assert np.array_equal(np.asarray(s.scales_and_zeros), szs.numpy())


def test_explicit_sizes():
    _, q, sz = quantized(99, 256, 64, "uint8")
    assert [s.q.shape[0] for s in parallel.shard_n(q, sz, 2, sizes=[7, 92])] == [7, 92]
    assert [s.q.shape[1] for s in parallel.shard_k(q, sz, 64, 2, sizes=[64, 192])] == [32, 96]


@pytest.mark.parametrize("call, message", [
    (lambda q, sz: parallel.shard_k(q, sz, 64, 2, sizes=[96, 224]),
     "shard_k: sizes[0]=96 is not a multiple of group_size=64: a K shard must hold whole groups (sizes=[96, 224])"),
    (lambda q, sz: parallel.shard_k(q, sz, 64, 2, sizes=[64, 128]),
     "shard_k: sizes must add up to K=256, got sum([64, 128]) = 192"),
    (lambda q, sz: parallel.shard_k(q, sz, 64, 3, sizes=[128, 128]),
     "shard_k: sizes must have world_size=3 entries, got 2: [128, 128]"),
    (lambda q, sz: parallel.shard_k(q, sz, 64, 5),
     "split_k: K=256 has 4 groups of group_size=64, fewer than world_size=5 ranks"),
    (lambda q, sz: parallel.shard_k(q, sz, 128, 2),
     "shard_k: scales_and_zeros must be [K/group_size=2, N=99, 2], got [4, 99, 2]"),
    (lambda q, sz: parallel.shard_k(q, sz, 48, 2), "shard_k: group_size must be one of (32, 64, 128, 256), got 48"),
    (lambda q, sz: parallel.shard_n(q, sz, 0), "shard_n: world_size must be an integer >= 1, got 0"),
    (lambda q, sz: parallel.shard_n(q, sz, 100), "split_n: N=99 cannot be split over world_size=100 ranks"),
    (lambda q, sz: parallel.shard_n(q, sz, 2, sizes=[0, 99]), "shard_n: sizes[0] must be >= 1, got 0"),
    (lambda q, sz: parallel.shard_n(q.float(), sz, 2),
     "shard_n: q must be uint8 [N, K/2] (wire format) or int32 [N, K], got float32 [99, 128]"),
    (lambda q, sz: parallel.shard_n(q, sz[:, :98], 2), "shard_n: scales_and_zeros must be [K/group_size, N=99, 2]"),
])
def test_invalid_splits_raise(call, message):
    _, q, sz = quantized(99, 256, 64, "uint8")
    with pytest.raises(int4mm.Int4mmError) as e:
        call(q, sz)
    assert message in str(e.value)


def test_layers_need_an_initialized_process_group():
    if dist.is_initialized():
        pytest.skip("this process already has a process group")
    with pytest.raises(int4mm.Int4mmError, match="ColumnParallelInt4Linear: torch.distributed is not initialized"):
        ColumnParallelInt4Linear(64, 8, group_size=32)
    with pytest.raises(int4mm.Int4mmError, match="shard_model_: torch.distributed is not initialized"):
        parallel.shard_model_(nn.Sequential())


# --- the cases each rank runs ------------------------------------------------------


def _bound(a, w, bias, dtype, partials):
    """|y - ref| bound: each of `partials` K shards rounded to dtype, then summed in dtype, plus the bias."""
    u = (2 * partials) * UNIT_ROUNDOFF[dtype] + SAFETY * a.shape[1] * UNIT_ROUNDOFF["float32"]
    return u * (np.abs(a) @ np.abs(w).T + np.abs(bias)) + 1e-30


def _reference(layer, a):
    """float64 x @ dequantize(weight)^T + bias of a whole Int4Linear, and the dequantized weight."""
    q = int4mm.unpack(layer.weight.cpu(), layer.out_features, layer.in_features, backend="reference")
    w = dequantize_reference(q.numpy(), layer.scales_and_zeros, layer.group_size)
    bias = to_f64(layer.bias) if layer.bias is not None else np.zeros(layer.out_features)
    return to_f64(a) @ w.T + bias, w, bias


def _whole_linear(n, k, group_size, dtype, seed=0):
    """The same nn.Linear and Int4Linear (with bias) on every rank, on its DEVICE."""
    torch.manual_seed(seed)
    linear = nn.Linear(k, n, bias=True).to(dtype)
    with torch.no_grad():
        linear.bias.normal_()  # |bias| ~ 1, far above the float32 bound: a bias added twice shows
    return linear.to(DEVICE), Int4Linear.from_linear(linear, group_size=group_size).to(DEVICE)


def _input(m, k, dtype, seed=1):
    return torch.randn(2, m, k, generator=torch.Generator().manual_seed(seed)).to(DEVICE, dtype)  # [2, M, K]


def _check_close(y, ref, bound):
    err = np.abs(to_f64(y) - ref)
    assert np.all(err <= bound), f"max error {err.max():.3g}, bound there {bound.flat[err.argmax()]:.3g}"


def case_column_parallel(dtype_name):
    def run(rank, world):
        dtype = DTYPES[dtype_name]
        n, k, g = 99, 256, 64  # 99 = 50 + 49: uneven
        linear, whole = _whole_linear(n, k, g, dtype)
        a = _input(3, k, dtype)
        ref, w, bias = _reference(whole, a.reshape(-1, k))
        ref = ref.reshape(2, 3, n)
        bound = _bound(to_f64(a.reshape(-1, k)), w, bias, dtype_name, 1).reshape(2, 3, n)

        gathered = ColumnParallelInt4Linear.from_int4linear(whole, gather_output=True)
        assert gathered.out_features == parallel.split_n(n, world)[rank] and gathered.global_out_features == n
        y = gathered(a)
        assert y.shape == (2, 3, n) and y.dtype == dtype
        _check_close(y, ref, bound)
        _check_close(y, to_f64(whole(a)), 2 * bound)

        local = ColumnParallelInt4Linear.from_int4linear(whole, gather_output=False)
        s = slice(local.start, local.start + local.out_features)
        _check_close(local(a), ref[..., s], bound[..., s])

        # Quantizing only this rank's rows gives the same shard as sharding the whole quantized layer.
        own = ColumnParallelInt4Linear.from_linear(linear, group_size=g, gather_output=False)
        for name in ("weight", "scales_and_zeros", "bias", "packed"):
            assert torch.equal(getattr(own, name), getattr(local, name)), name
    return run


def case_row_parallel(dtype_name, reduce_dtype=None):
    def run(rank, world):
        dtype = DTYPES[dtype_name]
        n, k, g = 48, 320, 64  # 5 groups: 192 + 128 on 2 ranks
        linear, whole = _whole_linear(n, k, g, dtype)
        a = _input(3, k, dtype)
        ref, w, bias = _reference(whole, a.reshape(-1, k))
        ref = ref.reshape(2, 3, n)
        partials = 1 if reduce_dtype == torch.float32 else world
        bound = _bound(to_f64(a.reshape(-1, k)), w, bias, dtype_name, partials).reshape(2, 3, n)

        whole_x = RowParallelInt4Linear.from_int4linear(whole, input_is_parallel=False, reduce_dtype=reduce_dtype)
        assert whole_x.in_features == parallel.split_k(k, g, world)[rank] and whole_x.global_in_features == k
        y = whole_x(a)
        assert y.shape == (2, 3, n) and y.dtype == dtype
        _check_close(y, ref, bound)  # the bias once: twice is off by |bias| ~ 1

        sliced_x = RowParallelInt4Linear.from_int4linear(whole, input_is_parallel=True, reduce_dtype=reduce_dtype)
        x_local = a[..., sliced_x.start:sliced_x.start + sliced_x.in_features]
        assert torch.equal(sliced_x(x_local), y)

        own = RowParallelInt4Linear.from_linear(linear, group_size=g, input_is_parallel=True)
        for name in ("weight", "scales_and_zeros", "bias", "packed"):
            assert torch.equal(getattr(own, name), getattr(sliced_x, name)), name
    return run


def case_invalid_k_split(rank, world):
    _, whole = _whole_linear(48, 256, 64, torch.float32)
    with pytest.raises(int4mm.Int4mmError) as e:
        RowParallelInt4Linear.from_int4linear(whole, sizes=[96, 160])
    assert "RowParallelInt4Linear: sizes[0]=96 is not a multiple of group_size=64" in str(e.value)


# A Llama-like model written out, older-transformers style: the attention reads
# self.num_heads / self.num_key_value_heads / self.hidden_size, which shard_model_ must set.
class _Attention(nn.Module):
    def __init__(self, hidden, heads, kv_heads):
        super().__init__()
        self.num_heads, self.num_key_value_heads = heads, kv_heads
        self.head_dim, self.hidden_size = hidden // heads, hidden
        self.q_proj = nn.Linear(hidden, heads * self.head_dim, bias=True)
        self.k_proj = nn.Linear(hidden, kv_heads * self.head_dim, bias=True)
        self.v_proj = nn.Linear(hidden, kv_heads * self.head_dim, bias=True)
        self.o_proj = nn.Linear(heads * self.head_dim, hidden, bias=True)

    def forward(self, x):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        o = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return self.o_proj(o.transpose(1, 2).reshape(b, t, self.hidden_size))


class _MLP(nn.Module):
    def __init__(self, hidden, intermediate):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class _TinyLlama(nn.Module):
    def __init__(self, vocab=96, hidden=128, intermediate=352, heads=4, kv_heads=2, layers=2):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, hidden)
        self.layers = nn.ModuleList(nn.ModuleDict({"self_attn": _Attention(hidden, heads, kv_heads),
                                                   "mlp": _MLP(hidden, intermediate)}) for _ in range(layers))
        self.lm_head = nn.Linear(hidden, vocab, bias=False)

    def forward(self, ids):
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = x + layer["self_attn"](nn.functional.rms_norm(x, x.shape[-1:]))
            x = x + layer["mlp"](nn.functional.rms_norm(x, x.shape[-1:]))
        return self.lm_head(nn.functional.rms_norm(x, x.shape[-1:]))


def _logits_tolerance(dtype_name):
    # Relative to max |logits|. float32: summation order only (measured 4e-7). bfloat16:
    # o_proj/down_proj partials rounded to bf16 and reduced in bf16, through 2 layers and
    # the norms (measured 0.004-0.007, a few bf16 ulps).
    return 1e-5 if dtype_name == "float32" else 0.02


def _check_logits(sharded, whole, dtype_name):
    scale = whole.float().abs().max().item()
    diff = (sharded.float() - whole.float()).abs().max().item()
    assert diff <= _logits_tolerance(dtype_name) * scale, f"max |logits diff| {diff:.3g}, max |logits| {scale:.3g}"


def case_tiny_llama(dtype_name):
    def run(rank, world):
        import copy

        dtype = DTYPES[dtype_name]
        torch.manual_seed(0)
        model = _TinyLlama().to(DEVICE, dtype)
        int4mm.quantize_(model, group_size=32)
        whole = copy.deepcopy(model)
        report = parallel.shard_model_(model)
        assert (len(report.column), len(report.row), report.gathered) == (5 * 2, 2 * 2, ["lm_head"]), str(report)
        attn = model.layers[0]["self_attn"]
        assert (attn.num_heads, attn.num_key_value_heads, attn.hidden_size) == (4 // world, 2 // world, 128 // world)
        assert report.attributes["layers.0.self_attn.num_heads"] == (4, 4 // world)
        assert model.layers[1]["mlp"].down_proj.in_features == parallel.split_k(352, 32, world)[rank]  # 11 groups
        ids = torch.randint(0, 96, (2, 9), generator=torch.Generator().manual_seed(2)).to(DEVICE)
        _check_logits(model(ids), whole(ids), dtype_name)

        # Sharding an unquantized model quantizes each rank's shard only: the same weights.
        torch.manual_seed(0)
        fresh = _TinyLlama().to(DEVICE, dtype)
        parallel.shard_model_(fresh, group_size=32)
        for (name, a), (_, b) in zip(model.named_buffers(), fresh.named_buffers()):
            assert torch.equal(a, b), name
    return run


def case_heads_not_divisible(rank, world):
    model = _TinyLlama(heads=4, kv_heads=1)
    int4mm.quantize_(model, group_size=32)
    with pytest.raises(int4mm.Int4mmError) as e:
        parallel.shard_model_(model)
    assert (f"shard_model_: layers.0.self_attn: num_key_value_heads=1 is not divisible by world_size={world}"
            in str(e.value))
    assert not any(isinstance(m, (ColumnParallelInt4Linear, RowParallelInt4Linear)) for m in model.modules())
    assert model.layers[0]["self_attn"].num_heads == 4  # left as it was


def case_transformers_llama(dtype_name):
    def run(rank, world):
        import copy

        try:
            from transformers import LlamaConfig, LlamaForCausalLM
        except ImportError:
            return "skip: transformers is not installed"
        dtype = DTYPES[dtype_name]
        config = LlamaConfig(hidden_size=128, intermediate_size=352, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, vocab_size=96, max_position_embeddings=64)
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).to(DEVICE, dtype).eval()
        int4mm.quantize_(model, group_size=32)
        whole = copy.deepcopy(model)
        report = parallel.shard_model_(model)
        assert (len(report.column), len(report.row), report.gathered) == (5 * 2, 2 * 2, ["lm_head"]), str(report)
        ids = torch.randint(0, 96, (1, 9), generator=torch.Generator().manual_seed(2)).to(DEVICE)
        with torch.inference_mode():
            out, ref = model(ids, use_cache=True), whole(ids, use_cache=True)
            _check_logits(out.logits, ref.logits, dtype_name)
            step = torch.tensor([[5]], device=DEVICE)  # one decode step on the KV cache (this rank's heads)
            cache = "cache" if hasattr(out, "cache") else "past_key_values"
            out = model(step, use_cache=True, **{cache: getattr(out, cache)})
            ref = whole(step, use_cache=True, **{cache: getattr(ref, cache)})
            _check_logits(out.logits, ref.logits, dtype_name)
    return run


CASES = {
    "column_parallel_float32": case_column_parallel("float32"),
    "column_parallel_bfloat16": case_column_parallel("bfloat16"),
    "row_parallel_float32": case_row_parallel("float32"),
    "row_parallel_bfloat16": case_row_parallel("bfloat16"),
    "row_parallel_bfloat16_reduce_float32": case_row_parallel("bfloat16", torch.float32),
    "invalid_k_split": case_invalid_k_split,
    "tiny_llama_float32": case_tiny_llama("float32"),
    "tiny_llama_bfloat16": case_tiny_llama("bfloat16"),
    "heads_not_divisible": case_heads_not_divisible,
    "transformers_llama_float32": case_transformers_llama("float32"),
    "transformers_llama_bfloat16": case_transformers_llama("bfloat16"),
}


def _worker(rank, world, port, out_dir):
    """One rank: joins the BACKEND group, runs every case, saves {case: None | 'skip: why' | traceback}."""
    global DEVICE
    torch.set_num_threads(1)
    if BACKEND == "nccl":
        DEVICE = f"cuda:{rank}"
        torch.cuda.set_device(rank)
    dist.init_process_group(BACKEND, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=TIMEOUT_S // 2))
    results = {}
    try:
        for name, case in CASES.items():
            try:
                results[name] = case(rank, world)
            except Exception:  # noqa: BLE001  (recorded, and reported by the test of this case)
                results[name] = traceback.format_exc()
            dist.barrier()  # a case that failed on one rank must not leave the other in a collective
    finally:
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.destroy_process_group()


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory):
    if not dist.is_available() or not dist.is_backend_available(BACKEND):
        pytest.skip(f"this torch has no {BACKEND} backend")
    if BACKEND == "nccl" and (torch.cuda.device_count() < WORLD or not int4mm.backend_available("cuda")):
        pytest.skip(f"nccl: needs {WORLD} GPUs and int4mm built with CUDA")
    out_dir = str(tmp_path_factory.mktemp(BACKEND))
    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # WORLD ranks on a few cores: one thread each
    try:
        context = mp.start_processes(_worker, args=(WORLD, _free_port(), out_dir), nprocs=WORLD,
                                     join=False, start_method="spawn")
    finally:
        if saved is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = saved
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=TIMEOUT_S)
    while not context.join(timeout=1):
        if datetime.datetime.now() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the {WORLD} {BACKEND} ranks did not finish in {TIMEOUT_S} s")
    return [torch.load(os.path.join(out_dir, f"rank{r}.pt")) for r in range(WORLD)]


@pytest.mark.parametrize("rank", range(WORLD))
@pytest.mark.parametrize("case", list(CASES))
def test_ranks(rank_results, case, rank):
    result = rank_results[rank][case]
    if isinstance(result, str) and result.startswith("skip: "):
        pytest.skip(result[len("skip: "):])
    assert result is None, f"{BACKEND} rank {rank} of {WORLD}, case {case}:\n{result}"
