// The validation layer: every public operation checks its arguments here,
// once, and then calls one backend (src/core/backend.h) with raw pointers.
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/check.h"
#include "core/wire.h"

namespace int4mm {
namespace {

using detail::fail;

bool is_float(DType d) {
  return d == DType::kFloat32 || d == DType::kFloat16 || d == DType::kBFloat16;
}

void check_ndim(const char* op, const char* arg, const TensorView& t, int ndim) {
  if (t.ndim != ndim) {
    fail(op, arg, " must have ", ndim, " dimensions, got ", t.ndim, " (shape ", t.shape_string(),
         ")");
  }
}

void check_dtype(const char* op, const char* arg, const TensorView& t, DType dtype) {
  if (t.dtype != dtype) {
    fail(op, arg, " must be ", dtype_name(dtype), ", got ", dtype_name(t.dtype));
  }
}

void check_float_dtype(const char* op, const char* arg, const TensorView& t) {
  if (!is_float(t.dtype)) {
    fail(op, arg, " must be float32, float16 or bfloat16, got ", dtype_name(t.dtype));
  }
}

void check_device(const char* op, const char* arg, const TensorView& t, Device device) {
  if (t.device != device) {
    fail(op, arg, " must be on ", device_name(device), ", got ", device_name(t.device));
  }
}

void check_data(const char* op, const char* arg, const TensorView& t) {
  if (t.data == nullptr && t.numel() > 0) fail(op, arg, " has a null data pointer");
}

void check_contiguous(const char* op, const char* arg, const TensorView& t) {
  if (!t.is_contiguous()) fail(op, arg, " must be contiguous, got shape ", t.shape_string());
}

// A 2-D view whose rows may be strided but whose innermost dimension is dense.
// Returns the row stride in elements.
int64_t check_rows(const char* op, const char* arg, const TensorView& t) {
  check_ndim(op, arg, t, 2);
  if (t.shape[1] > 1 && t.strides[1] != 1) {
    fail(op, arg, " must have a contiguous last dimension (stride 1), got stride ", t.strides[1]);
  }
  if (t.shape[0] > 1 && t.strides[0] < t.shape[1]) {
    fail(op, arg, " row stride must be >= ", t.shape[1], ", got ", t.strides[0]);
  }
  return t.shape[0] > 1 ? t.strides[0] : t.shape[1];
}

void check_group_size(const char* op, int64_t group_size) {
  if (group_size != 32 && group_size != 64 && group_size != 128 && group_size != 256) {
    fail(op, "group_size must be 32, 64, 128 or 256, got ", group_size);
  }
}

void check_k(const char* op, const char* from, int64_t k, int64_t group_size) {
  if (k <= 0 || k % group_size != 0) {
    fail(op, "K (", from, ") must be a positive multiple of group_size=", group_size, ", got ", k);
  }
}

// Resolves kAuto from the device, and checks the backend can serve it.
Backend resolve_backend(const char* op, Backend backend, Device device) {
  if (backend == Backend::kAuto) {
    backend = device.type == DeviceType::kCUDA ? Backend::kCuda : Backend::kCpu;
  }
  const bool wants_cuda = backend == Backend::kCuda;
  if (wants_cuda != (device.type == DeviceType::kCUDA)) {
    fail(op, "backend ", backend_name(backend), " needs tensors on ",
         wants_cuda ? "a CUDA device" : "the cpu", ", got ", device_name(device));
  }
  if (wants_cuda && !detail::cuda::available()) {
    fail(op, "backend cuda is not available: int4mm was built without CUDA or no GPU is present");
  }
  return backend;
}

void check_packed(const char* op, const TensorView& packed, Backend backend, int64_t n, int64_t k,
                  Device device) {
  check_dtype(op, "packed", packed, DType::kUInt8);
  check_ndim(op, "packed", packed, 2);
  check_device(op, "packed", packed, device);
  check_contiguous(op, "packed", packed);
  check_data(op, "packed", packed);
  const PackedShape want = packed_shape(backend, n, k);
  if (packed.shape[0] != want.rows || packed.shape[1] != want.cols) {
    fail(op, "packed must be [", want.rows, ", ", want.cols, "] (the ", backend_name(backend),
         " layout of N=", n, ", K=", k, "), got ", packed.shape_string());
  }
}

void check_scales_and_zeros(const char* op, const TensorView& sz, int64_t n, int64_t k,
                            int64_t group_size, DType dtype, Device device) {
  check_dtype(op, "scales_and_zeros", sz, dtype);
  check_device(op, "scales_and_zeros", sz, device);
  const int64_t groups = k / group_size;
  if (sz.ndim != 3 || sz.shape[0] != groups || sz.shape[1] != n || sz.shape[2] != 2) {
    fail(op, "scales_and_zeros must be [K/group_size=", groups, ", N=", n, ", 2], got ",
         sz.shape_string());
  }
  check_contiguous(op, "scales_and_zeros", sz);
  check_data(op, "scales_and_zeros", sz);
}

// The q argument of pack/unpack: int32 [N, K] or uint8 wire [N, K/2].
// Returns {N, K}.
std::pair<int64_t, int64_t> check_q(const char* op, const TensorView& q) {
  check_ndim(op, "q", q, 2);
  check_contiguous(op, "q", q);
  check_data(op, "q", q);
  int64_t n = q.shape[0];
  int64_t k;
  if (q.dtype == DType::kInt32) {
    k = q.shape[1];
  } else if (q.dtype == DType::kUInt8) {
    k = 2 * q.shape[1];
  } else {
    fail(op, "q must be int32 [N, K] or uint8 [N, K/2], got ", dtype_name(q.dtype));
  }
  if (n < 1) fail(op, "N (q.shape[0]) must be >= 1, got ", n);
  if (k < 32 || k % 32 != 0) {
    fail(op, "K must be a positive multiple of 32 (the smallest group size), got ", k,
         q.dtype == DType::kUInt8 ? " (2 * q.shape[1])" : " (q.shape[1])");
  }
  return {n, k};
}

}  // namespace

PackedShape packed_shape(Backend backend, int64_t n, int64_t k) {
  const char* op = "packed_shape";
  if (n < 1) fail(op, "N must be >= 1, got ", n);
  if (k < 32 || k % 32 != 0) fail(op, "K must be a positive multiple of 32, got ", k);
  switch (backend) {
    case Backend::kReference: return {n, k / 2};
    case Backend::kCpu: return detail::cpu::packed_shape(n, k);
    case Backend::kCuda: return detail::cuda::packed_shape(n, k);
    case Backend::kAuto: break;
  }
  fail(op, "backend must be reference, cpu or cuda, got ", backend_name(backend));
}

bool backend_available(Backend backend) {
  switch (backend) {
    case Backend::kAuto:
    case Backend::kReference:
    case Backend::kCpu: return true;
    case Backend::kCuda: return detail::cuda::available();
  }
  return false;
}

void convert_weight_to_int4pack(const TensorView& q, const TensorView& packed,
                                int64_t inner_k_tiles, const Options& options) {
  const char* op = "convert_weight_to_int4pack";
  if (inner_k_tiles != 2 && inner_k_tiles != 4 && inner_k_tiles != 8) {
    fail(op, "inner_k_tiles must be 2, 4 or 8, got ", inner_k_tiles);
  }
  const auto [n, k] = check_q(op, q);
  const Backend backend = resolve_backend(op, options.backend, q.device);
  check_packed(op, packed, backend, n, k, q.device);
  auto* out = static_cast<uint8_t*>(packed.data);

  if (backend == Backend::kCuda) {
    detail::cuda::pack(q.data, q.dtype == DType::kInt32, n, k, out, options, q.device.index);
    return;
  }
  // Host: bring q to the wire format first (validating int32 values), then
  // let the backend permute it.
  std::vector<uint8_t> wire_buffer;
  const uint8_t* wire = static_cast<const uint8_t*>(q.data);
  if (q.dtype == DType::kInt32) {
    wire_buffer.resize(size_t(n * k / 2));
    detail::int32_to_wire(op, static_cast<const int32_t*>(q.data), n, k, wire_buffer.data());
    wire = wire_buffer.data();
  }
  if (backend == Backend::kReference) {
    if (wire != out) std::copy(wire, wire + n * k / 2, out);
  } else {
    detail::cpu::pack(wire, n, k, out, options);
  }
}

void unpack(const TensorView& packed, const TensorView& q, const Options& options) {
  const char* op = "unpack";
  const auto [n, k] = check_q(op, q);
  const Backend backend = resolve_backend(op, options.backend, q.device);
  check_packed(op, packed, backend, n, k, q.device);
  const auto* in = static_cast<const uint8_t*>(packed.data);

  if (backend == Backend::kCuda) {
    detail::cuda::unpack(in, n, k, q.data, q.dtype == DType::kInt32, options, q.device.index);
    return;
  }
  std::vector<uint8_t> wire_buffer;
  uint8_t* wire = static_cast<uint8_t*>(q.data);
  if (q.dtype == DType::kInt32) {
    wire_buffer.resize(size_t(n * k / 2));
    wire = wire_buffer.data();
  }
  if (backend == Backend::kReference) {
    std::copy(in, in + n * k / 2, wire);
  } else {
    detail::cpu::unpack(in, n, k, wire, options);
  }
  if (q.dtype == DType::kInt32) {
    detail::wire_to_int32(wire, n, k, static_cast<int32_t*>(q.data));
  }
}

void weight_int4pack_mm(const TensorView& a, const TensorView& packed, int64_t group_size,
                        const TensorView& scales_and_zeros, const TensorView& c,
                        const Options& options) {
  const char* op = "weight_int4pack_mm";
  check_float_dtype(op, "A", a);
  const int64_t lda = check_rows(op, "A", a);
  check_data(op, "A", a);
  const Device device = a.device;
  const Backend backend = resolve_backend(op, options.backend, device);
  const int64_t m = a.shape[0];
  const int64_t k = a.shape[1];
  check_group_size(op, group_size);
  check_k(op, "A.shape[1]", k, group_size);

  check_dtype(op, "C", c, a.dtype);
  check_device(op, "C", c, device);
  const int64_t ldc = check_rows(op, "C", c);
  check_data(op, "C", c);
  if (c.shape[0] != m) fail(op, "C must have M=", m, " rows (A.shape[0]), got ", c.shape_string());
  const int64_t n = c.shape[1];
  if (n < 1) fail(op, "N (C.shape[1]) must be >= 1, got ", n);

  check_scales_and_zeros(op, scales_and_zeros, n, k, group_size, a.dtype, device);
  check_packed(op, packed, backend, n, k, device);
  if (m == 0) return;

  const detail::MmArgs args{a.dtype, a.data,  lda, static_cast<const uint8_t*>(packed.data),
                            scales_and_zeros.data, c.data, ldc, m, n, k, group_size, &options,
                            device.index};
  switch (backend) {
    case Backend::kReference: detail::reference::mm(args); break;
    case Backend::kCpu: detail::cpu::mm(args); break;
    case Backend::kCuda: detail::cuda::mm(args); break;
    case Backend::kAuto: break;
  }
}

void dequantize(const TensorView& packed, int64_t group_size, const TensorView& scales_and_zeros,
                const TensorView& w, const Options& options) {
  const char* op = "dequantize";
  check_float_dtype(op, "W", w);
  const int64_t ldw = check_rows(op, "W", w);
  check_data(op, "W", w);
  const Device device = w.device;
  const Backend backend = resolve_backend(op, options.backend, device);
  const int64_t n = w.shape[0];
  const int64_t k = w.shape[1];
  if (n < 1) fail(op, "N (W.shape[0]) must be >= 1, got ", n);
  check_group_size(op, group_size);
  check_k(op, "W.shape[1]", k, group_size);
  check_float_dtype(op, "scales_and_zeros", scales_and_zeros);
  check_scales_and_zeros(op, scales_and_zeros, n, k, group_size, scales_and_zeros.dtype, device);
  check_packed(op, packed, backend, n, k, device);

  const detail::DequantArgs args{static_cast<const uint8_t*>(packed.data),
                                 scales_and_zeros.data,
                                 scales_and_zeros.dtype,
                                 w.data,
                                 w.dtype,
                                 ldw,
                                 n,
                                 k,
                                 group_size,
                                 &options,
                                 device.index};
  switch (backend) {
    case Backend::kReference: detail::reference::dequantize(args); break;
    case Backend::kCpu: detail::cpu::dequantize(args); break;
    case Backend::kCuda: detail::cuda::dequantize(args); break;
    case Backend::kAuto: break;
  }
}

}  // namespace int4mm
