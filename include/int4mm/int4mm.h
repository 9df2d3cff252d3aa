// int4mm: int4 weight-only quantized matrix multiplication (W4A16).
//
// The public C++ API. It carries the operator contract of PyTorch's
// `_convert_weight_to_int4pack` + `_weight_int4pack_mm` (docs/contract.md):
//
//   q        [N, K]     int32 values 0..15, or the uint8 wire format [N, K/2]
//                       (byte j of row n = q[n][2j] << 4 | q[n][2j+1])
//   sz       [K/g, N, 2] scale and zero per group, in the activation dtype
//   w[n][k]  = (q[n][k] - 8) * scale[k/g][n] + zero[k/g][n]
//   C[m][n]  = sum_k A[m][k] * w[n][k], accumulated in float32, rounded once.
//
// Every function takes non-owning TensorViews (the caller owns memory, on the
// host or on a CUDA device) and throws int4mm::Error, whose message names the
// op, the argument, the expected value and the value given. No CUDA header is
// needed to use this file: streams travel as `void*` (a cudaStream_t).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

namespace int4mm {

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

// The one error type of the library. what() reads "<op>: <what is wrong>".
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------

enum class DType : int { kFloat32, kFloat16, kBFloat16, kInt32, kUInt8 };

const char* dtype_name(DType dtype);  // "float32", "float16", "bfloat16", ...
int64_t dtype_size(DType dtype);      // bytes per element

enum class DeviceType : int { kCPU, kCUDA };

struct Device {
  DeviceType type = DeviceType::kCPU;
  int index = 0;  // CUDA ordinal; 0 for the CPU

  static Device cpu() { return {DeviceType::kCPU, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::kCUDA, index}; }
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
};

std::string device_name(Device device);  // "cpu", "cuda:0"

// A non-owning view of an n-dimensional array (n <= kMaxDims). Strides are in
// elements. The operations below say which views they accept; most require
// the innermost dimension to be contiguous.
struct TensorView {
  static constexpr int kMaxDims = 4;

  void* data = nullptr;
  DType dtype = DType::kFloat32;
  Device device{};
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};

  // A row-major contiguous view.
  static TensorView contiguous(void* data, DType dtype, std::initializer_list<int64_t> shape,
                               Device device = Device::cpu());

  int64_t numel() const;
  int64_t size(int dim) const { return shape[dim]; }
  int64_t stride(int dim) const { return strides[dim]; }
  bool is_contiguous() const;
  std::string shape_string() const;  // "[16, 4096, 2]"
};

// Where a packed weight lives and which kernels read it. Each backend owns
// its packed layout (private, may change between versions); the reference
// backend's "packed" layout is the uint8 wire format itself.
enum class Backend : int {
  kAuto,       // from the tensors' device: CPU -> kCpu, CUDA -> kCuda
  kReference,  // float64 scalar oracle, host memory, never optimized
  kCpu,        // vectorized, multithreaded host kernels
  kCuda,       // CUDA kernels, device memory
};

const char* backend_name(Backend backend);  // "auto", "reference", "cpu", "cuda"
Backend parse_backend(const std::string& name);

// True when the backend was compiled in and can run here (a GPU is present
// for kCuda).
bool backend_available(Backend backend);

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

struct Options {
  Backend backend = Backend::kAuto;
  void* stream = nullptr;  // cudaStream_t for kCuda; nullptr = the default stream
  int threads = 0;         // kCpu: worker threads; 0 = the cores present
};

// The two variants of the reference quantizer (CONTRACT.md).
enum class QuantizerVariant : int {
  // gpt-fast: scale and zero are rounded to the storage dtype first, and q is
  // computed against the rounded values. More accurate; the default.
  kStoredRounded,
  // PyTorch's `_group_quantize_tensor`: q computed against the unrounded
  // scale and min, in float32.
  kPyTorch,
};

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

// Quantizes W [N, K] (float32/float16/bfloat16, host) per group of
// `group_size` consecutive k. Writes q (int32 [N, K] or uint8 wire [N, K/2])
// and scales_and_zeros [K/group_size, N, 2] in W's dtype. NaN or Inf in W is
// an error.
void group_quantize(const TensorView& w, int64_t group_size, const TensorView& q,
                    const TensorView& scales_and_zeros,
                    QuantizerVariant variant = QuantizerVariant::kStoredRounded);

// The shape [rows, cols] of the uint8 tensor that holds a packed weight of
// N x K for `backend` (kAuto is not accepted here: name the backend).
struct PackedShape {
  int64_t rows = 0;
  int64_t cols = 0;
};
PackedShape packed_shape(Backend backend, int64_t n, int64_t k);

// Packs q (int32 [N, K] or uint8 wire [N, K/2]) into `packed`, a uint8 view
// of packed_shape(backend, N, K) on the backend's device. q must be on the
// same device. inner_k_tiles (2, 4 or 8) is validated for PyTorch
// compatibility; our layouts do not depend on it. A value outside 0..15 in an
// int32 q is an error (on CUDA this waits for the stream to check it).
void convert_weight_to_int4pack(const TensorView& q, const TensorView& packed,
                                int64_t inner_k_tiles = 8, const Options& options = {});

// Unpacks `packed` (N x K for the backend) back into q: int32 [N, K] or the
// uint8 wire format [N, K/2], bit-exact.
void unpack(const TensorView& packed, const TensorView& q, const Options& options = {});

// C [M, N] = A [M, K] @ dequantize(packed)^T. A, scales_and_zeros and C share
// one dtype (float32, float16 or bfloat16) and the packed weight's device.
// Rows of A and C may be strided (innermost dimension contiguous). M may be 0.
void weight_int4pack_mm(const TensorView& a, const TensorView& packed, int64_t group_size,
                        const TensorView& scales_and_zeros, const TensorView& c,
                        const Options& options = {});

// W [N, K] (any float dtype) = dequantize(packed, scales_and_zeros).
void dequantize(const TensorView& packed, int64_t group_size,
                const TensorView& scales_and_zeros, const TensorView& w,
                const Options& options = {});

}  // namespace int4mm
