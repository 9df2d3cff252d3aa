// The reference quantizer of CONTRACT.md (PyTorch's `_group_quantize_tensor`,
// and gpt-fast's variant that quantizes against the stored, rounded scale and
// zero). Host only; it exists so that tests, benchmarks and the Python
// package all produce the same q and scales_and_zeros from one W.
#include <cmath>
#include <vector>

#include "core/check.h"
#include "core/float16.h"
#include "core/wire.h"

namespace int4mm {
namespace {

using detail::fail;
using detail::load_float;
using detail::round_to;

// Round half to even, as torch.round.
double round_half_even(double x) { return std::nearbyint(x); }

struct GroupParams {
  float scale;  // as stored (rounded to the dtype)
  float zero;   // as stored
};

// PyTorch's helper: every operation is done in the weight's dtype (each
// result rounded to it), q against the unrounded min.
GroupParams quantize_group_pytorch(const float* w, int64_t count, DType dtype, int32_t* q) {
  float mx = w[0], mn = w[0];
  for (int64_t i = 1; i < count; ++i) {
    mx = std::max(mx, w[i]);
    mn = std::min(mn, w[i]);
  }
  const float range = std::max(round_to(dtype, mx - mn), round_to(dtype, 1e-6f));
  const float scale = round_to(dtype, range / 15.0f);
  const float zero = round_to(dtype, mn + round_to(dtype, scale * 8.0f));
  for (int64_t i = 0; i < count; ++i) {
    const float shifted = round_to(dtype, w[i] - mn);
    const double v = round_half_even(round_to(dtype, shifted / scale));
    q[i] = int32_t(std::min(15.0, std::max(0.0, v)));
  }
  return {scale, zero};
}

// gpt-fast: scale and zero rounded to the dtype first; q computed (in float64)
// against the value at q = 0 that the stored pair actually encodes.
GroupParams quantize_group_stored(const float* w, int64_t count, DType dtype, int32_t* q) {
  float mx = w[0], mn = w[0];
  for (int64_t i = 1; i < count; ++i) {
    mx = std::max(mx, w[i]);
    mn = std::min(mn, w[i]);
  }
  const double scale_exact = std::max(double(mx) - double(mn), 1e-6) / 15.0;
  const float scale = round_to(dtype, float(scale_exact));
  const float zero = round_to(dtype, float(double(mn) + 8.0 * scale_exact));
  const double lowest = double(zero) - 8.0 * double(scale);  // the value q = 0 encodes
  for (int64_t i = 0; i < count; ++i) {
    const double v = round_half_even((double(w[i]) - lowest) / double(scale));
    q[i] = int32_t(std::min(15.0, std::max(0.0, v)));
  }
  return {scale, zero};
}

}  // namespace

void group_quantize(const TensorView& w, int64_t group_size, const TensorView& q,
                    const TensorView& scales_and_zeros, QuantizerVariant variant) {
  const char* op = "group_quantize";
  if (w.dtype != DType::kFloat32 && w.dtype != DType::kFloat16 && w.dtype != DType::kBFloat16) {
    fail(op, "W must be float32, float16 or bfloat16, got ", dtype_name(w.dtype));
  }
  for (const TensorView* t : {&w, &q, &scales_and_zeros}) {
    if (t->device.type != DeviceType::kCPU) {
      fail(op, "runs on the host; tensors must be on cpu, got ", device_name(t->device));
    }
  }
  if (w.ndim != 2) fail(op, "W must have 2 dimensions, got shape ", w.shape_string());
  if (!w.is_contiguous()) fail(op, "W must be contiguous, got shape ", w.shape_string());
  if (group_size != 32 && group_size != 64 && group_size != 128 && group_size != 256) {
    fail(op, "group_size must be 32, 64, 128 or 256, got ", group_size);
  }
  const int64_t n = w.shape[0];
  const int64_t k = w.shape[1];
  if (n < 1) fail(op, "N (W.shape[0]) must be >= 1, got ", n);
  if (k <= 0 || k % group_size != 0) {
    fail(op, "K (W.shape[1]) must be a positive multiple of group_size=", group_size, ", got ", k);
  }
  const bool q_int32 = q.dtype == DType::kInt32;
  if (!q_int32 && q.dtype != DType::kUInt8) {
    fail(op, "q must be int32 [N, K] or uint8 [N, K/2], got ", dtype_name(q.dtype));
  }
  const int64_t q_cols = q_int32 ? k : k / 2;
  if (q.ndim != 2 || q.shape[0] != n || q.shape[1] != q_cols) {
    fail(op, "q must be [N=", n, ", ", q_int32 ? "K=" : "K/2=", q_cols, "], got ",
         q.shape_string());
  }
  if (!q.is_contiguous()) fail(op, "q must be contiguous, got shape ", q.shape_string());
  const int64_t groups = k / group_size;
  if (scales_and_zeros.dtype != w.dtype) {
    fail(op, "scales_and_zeros must be ", dtype_name(w.dtype), " (W's dtype), got ",
         dtype_name(scales_and_zeros.dtype));
  }
  if (scales_and_zeros.ndim != 3 || scales_and_zeros.shape[0] != groups ||
      scales_and_zeros.shape[1] != n || scales_and_zeros.shape[2] != 2) {
    fail(op, "scales_and_zeros must be [K/group_size=", groups, ", N=", n, ", 2], got ",
         scales_and_zeros.shape_string());
  }
  if (!scales_and_zeros.is_contiguous()) {
    fail(op, "scales_and_zeros must be contiguous, got shape ", scales_and_zeros.shape_string());
  }
  for (const TensorView* t : {&w, &q, &scales_and_zeros}) {
    if (t->data == nullptr) fail(op, "an argument has a null data pointer");
  }

  std::vector<float> row(static_cast<size_t>(k));
  std::vector<int32_t> q_row(static_cast<size_t>(k));
  
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t j = 0; j < k; ++j) {
      row[j] = load_float(w.data, w.dtype, r * k + j);
      if (!std::isfinite(row[j])) fail(op, "W must be finite, got ", row[j], " at W[", r, "][", j, "]");
    }
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t off = g * group_size;
      const GroupParams p = variant == QuantizerVariant::kPyTorch
                                ? quantize_group_pytorch(&row[off], group_size, w.dtype, &q_row[off])
                                : quantize_group_stored(&row[off], group_size, w.dtype, &q_row[off]);
      detail::store_float(scales_and_zeros.data, w.dtype, (g * n + r) * 2 + 0, p.scale);
      detail::store_float(scales_and_zeros.data, w.dtype, (g * n + r) * 2 + 1, p.zero);
    }
    if (q_int32) {
      std::copy(q_row.begin(), q_row.end(), static_cast<int32_t*>(q.data) + r * k);
    } else {
      detail::int32_to_wire(op, q_row.data(), 1, k, static_cast<uint8_t*>(q.data) + r * (k / 2));
    }
  }
}

}  // namespace int4mm
