"""The int4mm operations on numpy arrays against the float64 reference (no torch needed)."""

import numpy as np
import pytest

import int4mm
from conftest import (UNIT_ROUNDOFF, GROUP_SIZES, HOST_BACKENDS, dequantize_reference, mm_bound, numpy_dtype,
                      to_f64, wire_from_int32)

DTYPES = ("float32", "float16", "bfloat16")


def make_weight(rng, n, k, dtype="float32"):
    return rng.standard_normal((n, k)).astype(numpy_dtype(dtype))


# --- quantizer ---------------------------------------------------------------


@pytest.mark.parametrize("variant", ["stored_rounded", "pytorch"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_group_quantize_formats_and_error(rng, variant, dtype):
    n, k, g = 19, 256, 64
    w = make_weight(rng, n, k, dtype)
    q, sz = int4mm.group_quantize(w, g, variant=variant)
    assert q.dtype == np.int32 and q.shape == (n, k)
    assert sz.dtype == w.dtype and sz.shape == (k // g, n, 2)
    assert q.min() >= 0 and q.max() <= 15
    wire, sz2 = int4mm.group_quantize(w, g, variant=variant, q_format="uint8")
    assert wire.dtype == np.uint8 and wire.shape == (n, k // 2)
    np.testing.assert_array_equal(wire, wire_from_int32(q))
    np.testing.assert_array_equal(to_f64(sz), to_f64(sz2))
    # stored_rounded: each value within half a step of the stored grid, plus the
    # rounding of the value that q = 0 encodes. pytorch does its arithmetic in
    # the weight's dtype (bfloat16 too), so it only promises a step.
    w_hat = dequantize_reference(q, sz, g)
    step = np.repeat(to_f64(sz)[:, :, 0].T, g, axis=1)
    zero = np.repeat(np.abs(to_f64(sz)[:, :, 1].T), g, axis=1)
    u = UNIT_ROUNDOFF[dtype]
    bound = 0.5 * step + 4 * u * (zero + 8 * step) if variant == "stored_rounded" else 1.0 * step
    assert np.all(np.abs(w_hat - to_f64(w)) <= bound + 1e-6)


def test_group_quantize_rejects_nonfinite():
    w = np.zeros((4, 64), np.float32)
    w[2, 5] = np.nan
    with pytest.raises(int4mm.Int4mmError, match=r"group_quantize: W must be finite, got nan at W\[2\]\[5\]"):
        int4mm.group_quantize(w, 32)


# --- packing -----------------------------------------------------------------


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("n,k", [(1, 32), (19, 64), (99, 256), (128, 512)])
def test_pack_unpack_round_trip_is_exact(rng, backend, n, k):
    q = rng.integers(0, 16, size=(n, k), dtype=np.int32)
    packed = int4mm.convert_weight_to_int4pack(q, backend=backend)
    assert packed.dtype == np.uint8 and packed.shape == int4mm.packed_shape(backend, n, k)
    np.testing.assert_array_equal(int4mm.unpack(packed, n, k, backend=backend), q)
    np.testing.assert_array_equal(int4mm.unpack(packed, n, k, q_format="uint8", backend=backend),
                                  wire_from_int32(q))
    # The wire format in gives the same bytes as int32 in.
    from_wire = int4mm.convert_weight_to_int4pack(wire_from_int32(q), inner_k_tiles=2, backend=backend)
    np.testing.assert_array_equal(from_wire, packed)


def test_reference_packing_is_the_wire_format(rng):
    q = rng.integers(0, 16, size=(5, 64), dtype=np.int32)
    packed = int4mm.convert_weight_to_int4pack(q, backend="reference")
    np.testing.assert_array_equal(packed, wire_from_int32(q))


# --- matmul and dequantize -----------------------------------------------------


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("group_size", GROUP_SIZES)
@pytest.mark.parametrize("m,n,kg", [(1, 1, 1), (3, 19, 2), (19, 99, 1), (64, 48, 3)])
def test_mm_matches_float64_reference(rng, backend, dtype, group_size, m, n, kg):
    k = group_size * kg
    q, sz = int4mm.group_quantize(make_weight(rng, n, k, dtype), group_size)
    a = rng.standard_normal((m, k)).astype(numpy_dtype(dtype))
    packed = int4mm.convert_weight_to_int4pack(q, backend=backend)
    c = int4mm.weight_int4pack_mm(a, packed, group_size, sz, backend=backend)
    assert c.dtype == a.dtype and c.shape == (m, n)
    w = dequantize_reference(q, sz, group_size)
    ref = to_f64(a) @ w.T
    err = np.abs(to_f64(c) - ref)
    bound = mm_bound(to_f64(a), w, dtype)
    assert np.all(err <= bound), f"max err/bound {np.max(err / bound):.3g}"


@pytest.mark.parametrize("backend", HOST_BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_dequantize_matches_reference(rng, backend, dtype):
    n, k, g = 19, 256, 128
    q, sz = int4mm.group_quantize(make_weight(rng, n, k, dtype), g)
    packed = int4mm.convert_weight_to_int4pack(q, backend=backend)
    w = int4mm.dequantize(packed, g, sz, backend=backend)
    assert w.dtype == sz.dtype and w.shape == (n, k)
    ref = dequantize_reference(q, sz, g)
    tol = 4 * UNIT_ROUNDOFF[dtype] * (np.abs(ref) + np.repeat(np.abs(to_f64(sz)).sum(2).T * 8, g, 1))
    assert np.all(np.abs(to_f64(w) - ref) <= tol)
    w32 = int4mm.dequantize(packed, g, sz, dtype="float32", backend=backend)
    assert w32.dtype == np.float32


def test_mm_empty_m_and_strided_rows(rng):
    n, k, g = 19, 128, 64
    q, sz = int4mm.group_quantize(make_weight(rng, n, k), g)
    packed = int4mm.convert_weight_to_int4pack(q)
    assert int4mm.weight_int4pack_mm(np.zeros((0, k), np.float32), packed, g, sz).shape == (0, n)
    wide = rng.standard_normal((5, k + 7)).astype(np.float32)
    a = wide[:, 3:3 + k]  # rows strided by k + 7
    out_wide = np.full((5, n + 4), 7.0, np.float32)
    out = out_wide[:, 2:2 + n]
    result = int4mm.weight_int4pack_mm(a, packed, g, sz, out=out)
    assert result is out
    np.testing.assert_array_equal(out, int4mm.weight_int4pack_mm(np.ascontiguousarray(a), packed, g, sz))
    assert np.all(out_wide[:, :2] == 7.0) and np.all(out_wide[:, 2 + n:] == 7.0)


def test_read_only_inputs_are_accepted(rng):
    q, sz = int4mm.group_quantize(make_weight(rng, 8, 64), 32)
    packed = int4mm.convert_weight_to_int4pack(q)
    a = rng.standard_normal((2, 64)).astype(np.float32)
    for x in (a, packed, sz):
        x.setflags(write=False)
    assert int4mm.weight_int4pack_mm(a, packed, 32, sz).shape == (2, 8)


# --- errors: Int4mmError (a ValueError) with the library's message ---------------


def test_error_is_a_value_error():
    assert issubclass(int4mm.Int4mmError, ValueError)


@pytest.mark.parametrize("call,message", [
    (lambda q, p, sz, a: int4mm.weight_int4pack_mm(a, p, 64, sz),
     r"weight_int4pack_mm: scales_and_zeros must be \[K/group_size=4, N=8, 2\], got \[2, 8, 2\]"),
    (lambda q, p, sz, a: int4mm.weight_int4pack_mm(a, p, 100, sz),
     r"weight_int4pack_mm: group_size must be 32, 64, 128 or 256, got 100"),
    (lambda q, p, sz, a: int4mm.weight_int4pack_mm(a.astype(np.float16), p, 128, sz),
     r"weight_int4pack_mm: scales_and_zeros must be float16, got float32"),
    (lambda q, p, sz, a: int4mm.weight_int4pack_mm(a.astype(np.int32), p, 128, sz),
     r"weight_int4pack_mm: A must be float32, float16 or bfloat16, got int32"),
    (lambda q, p, sz, a: int4mm.weight_int4pack_mm(a[:, :128], p, 128, sz),
     r"weight_int4pack_mm: scales_and_zeros must be \[K/group_size=1, N=8, 2\], got \[2, 8, 2\]"),
    (lambda q, p, sz, a: int4mm.weight_int4pack_mm(a, np.ascontiguousarray(p[:, :-1]), 128, sz),
     r"weight_int4pack_mm: packed must be \[\d+, \d+\] \(the cpu layout of N=8, K=256\), got \[8, \d+\]"),
    (lambda q, p, sz, a: int4mm.weight_int4pack_mm(a, p[:, ::2], 128, sz),
     r"weight_int4pack_mm: packed must be contiguous, got shape"),
    (lambda q, p, sz, a: int4mm.weight_int4pack_mm(a, p, 128, sz, backend="gpu"),
     r"backend"),
    (lambda q, p, sz, a: int4mm.convert_weight_to_int4pack(q, inner_k_tiles=3),
     r"convert_weight_to_int4pack: inner_k_tiles must be 2, 4 or 8, got 3"),
    (lambda q, p, sz, a: int4mm.convert_weight_to_int4pack(q.astype(np.float32)),
     r"convert_weight_to_int4pack: q must be int32 \[N, K\] or uint8 \[N, K/2\], got float32"),
    (lambda q, p, sz, a: int4mm.convert_weight_to_int4pack(np.ascontiguousarray(q[:, :48])),
     r"convert_weight_to_int4pack: K must be a positive multiple of 32"),
    (lambda q, p, sz, a: int4mm.convert_weight_to_int4pack(np.full((2, 32), 16, np.int32)),
     r"convert_weight_to_int4pack: .*16"),
    (lambda q, p, sz, a: int4mm.group_quantize(a, 48),
     r"group_quantize: group_size must be 32, 64, 128 or 256, got 48"),
    (lambda q, p, sz, a: int4mm.group_quantize(a[0], 32),
     r"group_quantize: W must have 2 dimensions"),
    (lambda q, p, sz, a: int4mm.group_quantize(a, 32, variant="gptq"),
     r'group_quantize: variant must be "stored_rounded" or "pytorch", got "gptq"'),
    (lambda q, p, sz, a: int4mm.weight_int4pack_mm(a.astype(np.uint16), p, 128, sz),
     r"uint16 arrays are not accepted"),
    (lambda q, p, sz, a: int4mm.packed_shape("cpu", 8, 100),
     r"packed_shape: K must be a positive multiple of 32, got 100"),
])
def test_errors_name_the_argument(rng, call, message):
    q, sz = int4mm.group_quantize(make_weight(rng, 8, 256), 128)
    packed = int4mm.convert_weight_to_int4pack(q)
    a = rng.standard_normal((3, 256)).astype(np.float32)
    with pytest.raises(int4mm.Int4mmError, match=message):
        call(q, packed, sz, a)


def test_non_arrays_are_a_type_error():
    with pytest.raises(TypeError, match="expected a numpy, torch or cupy array, got builtins.list"):
        int4mm.convert_weight_to_int4pack([[1, 2]])
