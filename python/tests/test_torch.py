"""int4mm with PyTorch: ops on tensors, torch.ops.int4mm.*, PyTorch's test__int4_mm
criterion, our output beside PyTorch's own int4 ops, Int4Linear, quantize_, and
torch.compile(fullgraph=True). Skipped as a whole where torch is not installed."""

import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import int4mm  # noqa: E402
from conftest import GROUP_SIZES, dequantize_reference, mm_bound, to_f64  # noqa: E402

HAS_CUDA = torch.cuda.is_available() and int4mm.backend_available("cuda")
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(
        not HAS_CUDA, reason="no CUDA GPU here (or int4mm built without CUDA): CUDA tests skipped")),
]
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU here (or int4mm built without CUDA)")
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def quantized(n, k, group_size, dtype, device, seed=0):
    """(w, q int32, q wire, scales_and_zeros) for a random W [N, K] quantized on the host."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g).to(dtype)
    q, sz = int4mm.group_quantize(w, group_size)
    wire, _ = int4mm.group_quantize(w, group_size, q_format="uint8")
    return w.to(device), q.to(device), wire.to(device), sz.to(device)


# --- ops on tensors --------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_ops_on_tensors_match_float64_reference(device, dtype):
    n, k, g, m = 99, 256, 64, 19
    _, q, wire, sz = quantized(n, k, g, DTYPES[dtype], device)
    packed = int4mm.convert_weight_to_int4pack(q)
    assert isinstance(packed, torch.Tensor) and packed.device.type == device
    assert torch.equal(int4mm.convert_weight_to_int4pack(wire), packed)
    assert torch.equal(int4mm.unpack(packed, n, k), q)
    a = torch.randn(m, k, generator=torch.Generator().manual_seed(1)).to(DTYPES[dtype]).to(device)
    c = int4mm.weight_int4pack_mm(a, packed, g, sz)
    assert c.dtype == a.dtype and c.device == a.device and c.shape == (m, n)
    w = dequantize_reference(q.cpu().numpy(), sz, g)
    err = np.abs(to_f64(c) - to_f64(a) @ w.T)
    assert np.all(err <= mm_bound(to_f64(a), w, dtype))
    # The torch operator is the same computation.
    c_op = torch.ops.int4mm.weight_int4pack_mm(a, torch.ops.int4mm.convert_weight_to_int4pack(q, 8), g, sz)
    assert torch.equal(c_op, c)


def test_tensors_requiring_grad_are_accepted():
    _, q, _, sz = quantized(8, 64, 32, torch.float32, "cpu")
    a = torch.randn(2, 64, requires_grad=True)
    c = int4mm.weight_int4pack_mm(a, int4mm.convert_weight_to_int4pack(q), 32, sz)
    assert c.shape == (2, 8)


# --- PyTorch's test__int4_mm, run against torch.ops.int4mm ------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("group_size", GROUP_SIZES)
@pytest.mark.parametrize("k_groups", [1, 2])
@pytest.mark.parametrize("n", [48, 64])
@pytest.mark.parametrize("m", [1, 32, 64])
def test__int4_mm_pytorch_criterion(device, dtype, group_size, k_groups, n, m):
    """test_linalg.py's test__int4_mm: b quantized, packed, multiplied; mean relative error < 0.05."""
    torch.manual_seed(0)
    k = group_size * k_groups
    dt = DTYPES[dtype]
    a = torch.rand((m, k), dtype=dt, device=device)
    b = torch.rand((k, n), dtype=dt, device=device)
    q, sz = int4mm.group_quantize(b.t().contiguous(), group_size, variant="pytorch")
    packed = torch.ops.int4mm.convert_weight_to_int4pack(q, 8)
    res = torch.ops.int4mm.weight_int4pack_mm(a, packed, group_size, sz)
    ref = torch.mm(a.float(), b.float())
    mean_err = ((res.float() - ref).abs() / ref.abs()).mean()
    assert mean_err < 0.05


# --- beside PyTorch's own int4 ops, on the same quantized weights ----------------


def _compare_beside_torch(ours, theirs, a, w):
    ref = to_f64(a) @ w.T
    scale = np.abs(ref).mean() + 1e-12
    err_ours = np.abs(to_f64(ours) - ref).mean() / scale
    err_theirs = np.abs(to_f64(theirs) - ref).mean() / scale
    # Both round the same float32 sums to the same dtype: ours no worse than
    # theirs (with slack for their different summation order), and close to it.
    assert err_ours <= 1.5 * err_theirs + 1e-6, (err_ours, err_theirs)
    assert np.abs(to_f64(ours) - to_f64(theirs)).mean() / scale < 1e-2


@pytest.mark.skipif(not hasattr(torch, "_weight_int4pack_mm_for_cpu"),
                    reason="this torch has no _weight_int4pack_mm_for_cpu")
@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("group_size", [32, 128])
@pytest.mark.parametrize("m", [1, 19])
def test_beside_torch_int4pack_mm_for_cpu(dtype, group_size, m):
    n, k = 64, 2 * group_size
    _, q, _, sz = quantized(n, k, group_size, DTYPES[dtype], "cpu", seed=m)
    a = torch.randn(m, k).to(DTYPES[dtype])
    try:
        theirs = torch._weight_int4pack_mm_for_cpu(
            a, torch._convert_weight_to_int4pack_for_cpu(q, 8), group_size, sz)
    except RuntimeError as e:
        pytest.skip(f"torch's CPU int4 op refused this case: {e}")
    ours = torch.ops.int4mm.weight_int4pack_mm(a, torch.ops.int4mm.convert_weight_to_int4pack(q, 8), group_size, sz)
    _compare_beside_torch(ours, theirs, a, dequantize_reference(q.numpy(), sz, group_size))


@needs_cuda
@pytest.mark.parametrize("group_size", [32, 64, 128, 256])
@pytest.mark.parametrize("m", [1, 7, 64])
def test_beside_torch_weight_int4pack_mm_cuda(group_size, m):
    n, k = 256, 512  # tinygemm needs K divisible by inner_k_tiles * 16 = 128
    _, q, wire, sz = quantized(n, k, group_size, torch.bfloat16, "cuda", seed=m)
    a = torch.randn(m, k, device="cuda").to(torch.bfloat16)
    theirs = torch._weight_int4pack_mm(a, torch._convert_weight_to_int4pack(wire, 8), group_size, sz)
    ours = torch.ops.int4mm.weight_int4pack_mm(a, torch.ops.int4mm.convert_weight_to_int4pack(wire, 8), group_size, sz)
    _compare_beside_torch(ours, theirs, a, dequantize_reference(q.cpu().numpy(), sz, group_size))


@needs_cuda
def test_cuda_runs_on_the_current_stream():
    n, k, g = 512, 1024, 128
    _, q, _, sz = quantized(n, k, g, torch.bfloat16, "cuda")
    packed = int4mm.convert_weight_to_int4pack(q)
    a = torch.randn(64, k, device="cuda", dtype=torch.bfloat16)
    expected = int4mm.weight_int4pack_mm(a, packed, g, sz)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        torch.cuda._sleep(10_000_000)  # keeps the side stream busy: a default-stream launch would race
        c = int4mm.weight_int4pack_mm(a, packed, g, sz)
    torch.cuda.synchronize()
    assert torch.equal(c, expected)


# --- the torch operators: schema, fake kernels, errors ---------------------------------


def test_opcheck_schema_and_fake_kernels():
    _, q, wire, sz = quantized(48, 256, 128, torch.bfloat16, "cpu")
    a = torch.randn(3, 256).to(torch.bfloat16)
    tests = ("test_schema", "test_faketensor")
    torch.library.opcheck(torch.ops.int4mm.convert_weight_to_int4pack.default, (q, 8), test_utils=tests)
    torch.library.opcheck(torch.ops.int4mm.convert_weight_to_int4pack.default, (wire, 4), test_utils=tests)
    packed = torch.ops.int4mm.convert_weight_to_int4pack(q, 8)
    torch.library.opcheck(torch.ops.int4mm.weight_int4pack_mm.default, (a, packed, 128, sz), test_utils=tests)


def test_same_signatures_as_torch_ops():
    ours = torch.ops.int4mm.weight_int4pack_mm.default._schema
    assert [a.type for a in ours.arguments] == [
        a.type for a in torch.ops.aten._weight_int4pack_mm.default._schema.arguments]
    ours = torch.ops.int4mm.convert_weight_to_int4pack.default._schema
    assert [a.type for a in ours.arguments] == [
        a.type for a in torch.ops.aten._convert_weight_to_int4pack.default._schema.arguments]


def test_operator_errors_are_int4mm_errors():
    _, q, _, sz = quantized(8, 256, 128, torch.float32, "cpu")
    packed = torch.ops.int4mm.convert_weight_to_int4pack(q, 8)
    with pytest.raises(int4mm.Int4mmError, match=r"weight_int4pack_mm: scales_and_zeros must be "
                                                 r"\[K/group_size=4, N=8, 2\], got \[2, 8, 2\]"):
        torch.ops.int4mm.weight_int4pack_mm(torch.randn(2, 256), packed, 64, sz)
    with pytest.raises(int4mm.Int4mmError, match="weight_int4pack_mm: scales_and_zeros must be bfloat16, got float32"):
        torch.ops.int4mm.weight_int4pack_mm(torch.randn(2, 256).bfloat16(), packed, 128, sz)
    with pytest.raises(int4mm.Int4mmError, match="convert_weight_to_int4pack: inner_k_tiles must be 2, 4 or 8, got 16"):
        torch.ops.int4mm.convert_weight_to_int4pack(q, 16)
    bad = q.clone()
    bad[3, 7] = 16
    with pytest.raises(int4mm.Int4mmError, match="convert_weight_to_int4pack"):
        torch.ops.int4mm.convert_weight_to_int4pack(bad, 8)


# --- Int4Linear and quantize_ ----------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_int4linear_from_linear(dtype, bias):
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 99, bias=bias).to(DTYPES[dtype])
    layer = int4mm.Int4Linear.from_linear(linear, group_size=64)
    x = torch.randn(2, 5, 256).to(DTYPES[dtype])
    y = layer(x)
    assert y.shape == (2, 5, 99) and y.dtype == x.dtype
    # Exactly the op on the dequantized weights, and close to the float layer.
    w = int4mm.dequantize(layer.packed, 64, layer.scales_and_zeros, dtype="float32")
    expected = x.float().reshape(-1, 256) @ w.T
    if bias:
        expected = expected + linear.bias.float()
    torch.testing.assert_close(y.float().reshape(-1, 99), expected, atol=0.05, rtol=0.02)
    rel = (y.float() - linear(x).float()).norm() / linear(x).float().norm()
    assert rel < 0.15


def test_int4linear_state_dict_is_the_wire_format():
    torch.manual_seed(0)
    linear = torch.nn.Linear(128, 48).to(torch.bfloat16)
    layer = int4mm.Int4Linear.from_linear(linear, group_size=32, quantizer="pytorch")
    state = layer.state_dict()
    assert set(state) == {"weight", "scales_and_zeros", "bias"}
    assert state["weight"].dtype == torch.uint8 and state["weight"].shape == (48, 64)
    assert state["scales_and_zeros"].shape == (4, 48, 2)
    _, wire = None, int4mm.group_quantize(linear.weight.detach(), 32, variant="pytorch", q_format="uint8")[0]
    assert torch.equal(state["weight"], wire)
    # Save, load into a fresh layer, same output.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    fresh = int4mm.Int4Linear(128, 48, bias=True, group_size=32, dtype=torch.bfloat16)
    fresh.load_state_dict(torch.load(buffer))
    x = torch.randn(3, 128).to(torch.bfloat16)
    assert torch.equal(fresh(x), layer(x))


def test_int4linear_cast_keeps_working():
    linear = torch.nn.Linear(128, 16)
    layer = int4mm.Int4Linear.from_linear(linear, group_size=128).half()
    assert layer.scales_and_zeros.dtype == torch.float16 and layer.weight.dtype == torch.uint8
    assert layer(torch.randn(2, 128).half()).dtype == torch.float16


def test_int4linear_errors_name_the_argument():
    layer = int4mm.Int4Linear.from_linear(torch.nn.Linear(128, 16).to(torch.bfloat16), group_size=128)
    with pytest.raises(int4mm.Int4mmError, match="weight_int4pack_mm: A must be float32, float16, "
                                                 "bfloat16, int32 or uint8, got torch.float64"):
        layer(torch.randn(2, 128, dtype=torch.float64))
    with pytest.raises(int4mm.Int4mmError, match="weight_int4pack_mm: scales_and_zeros must be float32, got bfloat16"):
        layer(torch.randn(2, 128))
    with pytest.raises(int4mm.Int4mmError, match="weight_int4pack_mm: A must have a contiguous last dimension"):
        torch.ops.int4mm.weight_int4pack_mm(torch.randn(128, 2).bfloat16().t(), layer.packed, 128,
                                            layer.scales_and_zeros)


def test_int4linear_rejects_bad_group_size():
    with pytest.raises(int4mm.Int4mmError, match="in_features must be a multiple of group_size=128, got 100"):
        int4mm.Int4Linear(100, 8)


@needs_cuda
def test_int4linear_checkpoint_moves_between_cpu_and_cuda():
    linear = torch.nn.Linear(256, 64).to(torch.bfloat16)
    layer = int4mm.Int4Linear.from_linear(linear, group_size=128)
    x = torch.randn(4, 256).to(torch.bfloat16)
    y_cpu = layer(x)
    cuda_layer = int4mm.Int4Linear(256, 64, group_size=128, device="cuda")
    cuda_layer.load_state_dict(layer.state_dict())
    torch.testing.assert_close(cuda_layer(x.cuda()).cpu(), y_cpu, atol=0.05, rtol=0.02)
    moved = layer.to("cuda")
    assert moved.packed.device.type == "cuda"
    torch.testing.assert_close(moved(x.cuda()).cpu(), y_cpu, atol=0.05, rtol=0.02)
    back = int4mm.Int4Linear(256, 64, group_size=128)
    back.load_state_dict(cuda_layer.state_dict())
    assert torch.equal(back(x), y_cpu)


class TinyMLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.up = torch.nn.Linear(256, 512)
        self.down = torch.nn.Linear(512, 128, bias=False)
        self.head = torch.nn.Linear(128, 10)
        self.odd = torch.nn.Linear(100, 256)  # in_features not a multiple of any group size

    def forward(self, x):
        return self.head(self.down(torch.nn.functional.silu(self.up(x))))


def test_quantize_swaps_linears_and_reports():
    torch.manual_seed(0)
    model = TinyMLP().to(torch.bfloat16)
    x = torch.randn(4, 256).to(torch.bfloat16)
    ref = model(x)
    report = int4mm.quantize_(model, group_size=128, filter=lambda module, name: name != "head")
    assert report.replaced == ["up", "down"]
    assert report.skipped == {"head": "filter",
                              "odd": "in_features=100 is not a multiple of group_size=128"}
    assert isinstance(model.up, int4mm.Int4Linear) and isinstance(model.head, torch.nn.Linear)
    assert "replaced 2 nn.Linear, skipped 2" in str(report)
    assert report.bytes_after < report.bytes_before / 3
    rel = (model(x).float() - ref.float()).norm() / ref.float().norm()
    assert rel < 0.15


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_fullgraph(device, backend):
    """aot_eager traces our fake kernels; inductor also compiles the code around the ops."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = TinyMLP().to(torch.bfloat16).to(device)
    int4mm.quantize_(model, group_size=128)
    x = torch.randn(3, 256, device=device).to(torch.bfloat16)
    with torch.no_grad():
        eager = model(x)
        compiled = torch.compile(model, fullgraph=True, backend=backend)(x)
    if backend == "aot_eager":
        torch.testing.assert_close(compiled, eager, atol=0, rtol=0)
    else:  # inductor fuses silu and the bias adds in float32: bfloat16 rounding differs
        torch.testing.assert_close(compiled, eager, atol=2e-2, rtol=2e-2)
