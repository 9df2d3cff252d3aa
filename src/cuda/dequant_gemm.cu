// dequantize: the CUDA layout -> dense W [N, K] in any float dtype, and the
// dequantize + cuBLAS matmul that serves every M the GEMV kernels don't.
//
// dequantize_kernel: a block of 128 threads takes one (tile, step) = 16 rows
// x 64 k = 512 packed bytes at a time into shared memory; thread (r, o)
// writes row r, k = 8o .. 8o+7 as one 16-byte (or 32-byte) store, so the
// stores are coalesced although the packed order is the mma fragment's.
//
// dequant_gemm_mm: W is dequantized in row chunks (at most kWorkspaceElems
// elements each, so the workspace stays ~128 MB whatever the shape) into a
// stream-ordered allocation, then C[:, chunk] = A @ W_chunk^T by
// cublasGemmEx with float32 compute (no TF32 for float32 activations: the
// handle keeps CUBLAS_DEFAULT_MATH).
#include <cublas_v2.h>

#include <mutex>
#include <unordered_map>

#include "cuda/common.cuh"
#include "cuda/cuda_internal.h"
#include "cuda/layout.h"

namespace int4mm::detail::cuda {
namespace {

namespace L = cuda_layout;

constexpr int kDequantThreads = 128;
constexpr int64_t kWorkspaceElems = int64_t(64) << 20;

template <typename TW, typename TS>
__global__ void __launch_bounds__(kDequantThreads)
    dequantize_kernel(const uint8_t* __restrict__ packed, const TS* __restrict__ sz,
                      TW* __restrict__ w, int64_t ldw, int n, int k, int group_size,
                      int row_begin, int row_end) {
  __shared__ __align__(16) uint32_t words[128];  // one (tile, step): [lane][word]
  const int steps = (k + 63) / 64;
  const int tile_begin = row_begin / 16;
  const int tiles = (row_end - row_begin + 15) / 16;
  const int r = threadIdx.x >> 3;  // row in the tile
  const int o = threadIdx.x & 7;   // octet of k in the step
  const bool vector_store = (ldw * int64_t(sizeof(TW))) % 16 == 0 &&
                            reinterpret_cast<uintptr_t>(w) % 16 == 0;
  for (int64_t unit = blockIdx.x; unit < int64_t(tiles) * steps; unit += gridDim.x) {
    const int tile = tile_begin + int(unit / steps);
    const int step = int(unit % steps);
    __syncthreads();
    if (threadIdx.x < 32) {
      const uint4 v = reinterpret_cast<const uint4*>(packed)[(int64_t(tile) * steps + step) * 32 + threadIdx.x];
      reinterpret_cast<uint4*>(words)[threadIdx.x] = v;
    }
    __syncthreads();
    const int row = tile * 16 + r;
    const int k0 = step * 64 + o * 8;
    if (row >= row_end || row >= n || k0 >= k) continue;
    const int group = k0 / group_size;
    const float scale = to_float(sz[(int64_t(group) * n + row) * 2]);
    const float zero = to_float(sz[(int64_t(group) * n + row) * 2 + 1]);
    // k0 + 2t + e (t = 0..3, e = 0..1) sits in lane (r % 8) * 4 + t, word o / 2,
    // nibble pair (r / 8) | ((o % 2) << 1), half e (layout.h).
    const int pair = (r >> 3) | ((o & 1) << 1);
    TW out[8];
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      const uint32_t v = (words[((r & 7) * 4 + t) * 4 + (o >> 1)] >> (4 * pair)) & 0x000f000fu;
      out[2 * t] = from_float<TW>(float(int(v & 0xfu) - 8) * scale + zero);
      out[2 * t + 1] = from_float<TW>(float(int(v >> 16) - 8) * scale + zero);
    }
    TW* dst = w + int64_t(row - row_begin) * ldw + k0;
    if (vector_store) {
#pragma unroll
      for (int i = 0; i < int(sizeof(out) / 16); ++i) {
        reinterpret_cast<uint4*>(dst)[i] = reinterpret_cast<const uint4*>(out)[i];
      }
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) dst[i] = out[i];
    }
  }
}

// Dequantizes rows [row_begin, row_end) into w (row 0 of w = row_begin).
template <typename TW, typename TS>
void launch_dequantize(const uint8_t* packed, const TS* sz, TW* w, int64_t ldw, int64_t n,
                       int64_t k, int64_t group_size, int64_t row_begin, int64_t row_end,
                       cudaStream_t stream) {
  const int64_t units = (row_end - row_begin + 15) / 16 * ((k + 63) / 64);
  const int grid = int(std::min<int64_t>(units, int64_t(sm_count()) * 16));
  dequantize_kernel<TW, TS><<<grid, kDequantThreads, 0, stream>>>(
      packed, sz, w, ldw, int(n), int(k), int(group_size), int(row_begin), int(row_end));
  INT4MM_CUDA_CHECK_LAUNCH("dequantize_kernel");
}

void check_cublas(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    throw Error(concat("cuda: ", call, " failed at ", file, ":", line, ": ",
                       cublasGetStatusName(status), " (", cublasGetStatusString(status), ")"));
  }
}
#define INT4MM_CUBLAS_CHECK(call) check_cublas((call), #call, __FILE__, __LINE__)

// One cuBLAS handle per (host thread, device): handles must not be shared by
// threads that set different streams. Deliberately never destroyed: a
// destructor at thread or process exit could run after the CUDA context is gone.
cublasHandle_t cublas_handle() {
  thread_local std::unordered_map<int, cublasHandle_t> handles;
  int device = 0;
  INT4MM_CUDA_CHECK(cudaGetDevice(&device));
  auto it = handles.find(device);
  if (it == handles.end()) {
    cublasHandle_t handle = nullptr;
    INT4MM_CUBLAS_CHECK(cublasCreate(&handle));
    it = handles.emplace(device, handle).first;
  }
  return it->second;
}

cudaDataType_t cuda_dtype(DType dtype) {
  switch (dtype) {
    case DType::kFloat16: return CUDA_R_16F;
    case DType::kBFloat16: return CUDA_R_16BF;
    default: return CUDA_R_32F;
  }
}

}  // namespace

void dequantize(const DequantArgs& args) {
  const DeviceGuard guard(args.device);
  check_device_pointer("dequantize", "packed", args.packed, args.device);
  check_device_pointer("dequantize", "scales_and_zeros", args.sz, args.device);
  check_device_pointer("dequantize", "W", args.w, args.device);
  const cudaStream_t stream = stream_of(*args.options);
  dispatch_float(args.w_dtype, [&](auto w_tag) {
    using TW = decltype(w_tag);
    dispatch_float(args.sz_dtype, [&](auto s_tag) {
      using TS = decltype(s_tag);
      launch_dequantize<TW, TS>(args.packed, static_cast<const TS*>(args.sz),
                                static_cast<TW*>(args.w), args.ldw, args.n, args.k,
                                args.group_size, 0, args.n, stream);
    });
  });
}

void dequant_gemm_mm(const MmArgs& args) {
  const cudaStream_t stream = stream_of(*args.options);
  const int64_t chunk_rows =
      std::max<int64_t>(16, std::min<int64_t>(L::padded_n(args.n), kWorkspaceElems / args.k / 16 * 16));
  const int64_t elem = dtype_size(args.dtype);
  void* workspace = nullptr;
  INT4MM_CUDA_CHECK(cudaMallocAsync(&workspace, size_t(chunk_rows * args.k * elem), stream));
  cublasHandle_t handle = cublas_handle();
  try {
    INT4MM_CUBLAS_CHECK(cublasSetStream(handle, stream));
    const float alpha = 1.0f, beta = 0.0f;
    const cudaDataType_t type = cuda_dtype(args.dtype);
    for (int64_t row = 0; row < args.n; row += chunk_rows) {
      const int64_t rows = std::min(chunk_rows, args.n - row);
      dispatch_float(args.dtype, [&](auto tag) {
        using T = decltype(tag);
        launch_dequantize<T, T>(args.packed, static_cast<const T*>(args.sz),
                                static_cast<T*>(workspace), args.k, args.n, args.k,
                                args.group_size, row, row + rows, stream);
      });
      // Column-major view: C^T [rows, m] = W_chunk [rows, k] @ A^T [k, m].
      INT4MM_CUBLAS_CHECK(cublasGemmEx(
          handle, CUBLAS_OP_T, CUBLAS_OP_N, int(rows), int(args.m), int(args.k), &alpha,
          workspace, type, int(args.k), args.a, type, int(args.lda), &beta,
          static_cast<char*>(args.c) + row * elem, type, int(args.ldc), CUBLAS_COMPUTE_32F,
          CUBLAS_GEMM_DEFAULT));
    }
  } catch (...) {
    cudaFreeAsync(workspace, stream);
    throw;
  }
  INT4MM_CUDA_CHECK(cudaFreeAsync(workspace, stream));
}

}  // namespace int4mm::detail::cuda
