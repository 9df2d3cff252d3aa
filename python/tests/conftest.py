"""Shared helpers of the int4mm Python tests: the float64 reference and its bound.

The reference is the contract itself (docs/contract.md), written in numpy:
w[n][k] = (q[n][k] - 8) * scale[k/g][n] + zero[k/g][n], C = A @ w^T in float64.
"""

import numpy as np
import pytest

import int4mm

# The unit roundoff of each output dtype: a kernel accumulates in float32 and
# rounds once, so |C - ref| <= (u_out + K * u_f32 * SAFETY) * (|A| @ |w|^T).
UNIT_ROUNDOFF = {"float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}
SAFETY = 4.0

GROUP_SIZES = (32, 64, 128, 256)
HOST_BACKENDS = ("reference", "cpu")


def to_f64(x):
    """Any float array (numpy, ml_dtypes, torch incl. bfloat16) as a float64 numpy array."""
    if type(x).__module__.split(".")[0] == "torch":
        return x.detach().cpu().double().numpy()
    return np.asarray(x).astype(np.float64)


def dequantize_reference(q, scales_and_zeros, group_size):
    """w float64 [N, K] from q int32 [N, K] (numpy) and scales_and_zeros [K/g, N, 2]."""
    sz = to_f64(scales_and_zeros)
    g = np.arange(q.shape[1]) // group_size
    scale = sz[g, :, 0].T  # [N, K]
    zero = sz[g, :, 1].T
    return (q.astype(np.float64) - 8.0) * scale + zero


def mm_bound(a, w, dtype):
    """The elementwise bound on |C - A @ w^T| for the output dtype (see UNIT_ROUNDOFF)."""
    k = a.shape[1]
    u = UNIT_ROUNDOFF[dtype] + SAFETY * k * UNIT_ROUNDOFF["float32"]
    return u * (np.abs(a) @ np.abs(w).T) + 1e-30


def wire_from_int32(q):
    """PyTorch's uint8 wire format [N, K/2] of q int32 [N, K]: high nibble = even k."""
    q = np.asarray(q)
    return ((q[:, 0::2] << 4) | q[:, 1::2]).astype(np.uint8)


def numpy_dtype(name):
    if name == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        return ml_dtypes.bfloat16
    return np.dtype(name)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def has_backend(name):
    return int4mm.backend_available(name)
