// dequantize: the CUDA layout -> dense W [N, K] in any float dtype, and the
// dequantize + cuBLAS matmul that serves every M the GEMV kernels don't.
//
// dequantize_kernel: every warp works alone on its own units, a unit being one
// (tile, step) = 16 rows x 64 k = 512 packed bytes (layout.h). A warp takes
// the units gw, gw + W, gw + 2W, ... (gw its index in the grid, W the warps
// of the grid, which is sized to what is resident: a persistent grid, so no
// second, partial wave), and
// keeps kDequantAhead of them loading into registers ahead of the one it
// converts, so each warp has ~2 KB of 16-byte loads in flight:
//
//   registers  ahead[0..3]  (uint4 per lane = one unit, + its scale/zero)
//      │  unit u: ahead[u] -> shared (transposed), then ahead[u] <- unit u + 4W
//      ▼
//   shared, per warp   words [word 0..3][lane 0..31]     (16-byte chunks XOR-swizzled)
//                      scale_zero [group 0..1][row 0..15] (float2)
//      │  __syncwarp only: no warp waits for another
//      ▼
//   lane (r, c) reads the kVec / 2 words holding row r, k = c*kVec .. +kVec
//   with one 8- or 16-byte shared load and writes them as one 16-byte store:
//   a warp-wide store covers whole rows of the unit (4 rows x 128 bytes for
//   16-bit W, 2 rows x 256 bytes for float W), so stores stay coalesced.
//
// The math: w = float(q - 8) * scale + zero as one fma in float32, rounded
// once to TW; float(q - 8) comes from the exponent trick 2^23 + q - (2^23 + 8),
// exact, instead of an int-to-float conversion per weight.
//
// dequant_gemm_mm: W is dequantized in row chunks into a stream-ordered
// workspace, then C[:, chunk] = A @ W_chunk^T by cublasGemmEx with float32
// compute (no TF32 for float32 activations: the handle keeps
// CUBLAS_DEFAULT_MATH). The chunk (dequant_gemm_with's knob, which the
// benchmarks sweep) is small enough that the dequantized chunk can stay in L2
// while cuBLAS reads it where K allows, large enough that one chunk's GEMM
// still fills the GPU. Dequantizing chunk i + 1 on a second stream during the
// GEMM of chunk i was built and measured slower on the H100 in 26 of 30
// (shape, M) cases (cuBLAS's GEMM leaves no SM free; docs/cuda.md, v4), so
// the chunks run in order on the caller's stream.
//
// Limitations:
//   1. The dequantize kernel's row_begin must be a multiple of 16 (a tile).
//   2. group_size is 32, 64, 128 or 256 (backend.h): a 64-k step then holds
//      one group, or two of 32.
//   3. Explicit chunk_rows are honoured up to N even past the default
//      workspace cap (benchmarks may ask for one chunk), rounded down to a
//      multiple of 128 (16 below 128 rows) and balanced over the chunks.
//
// Tested by tests/cuda/test_cuda.cpp (CudaDequantize*, CudaKernels with
// kDequantGemm), timed by `int4mm bench --backend cuda`; dequant_gemm_with
// (cuda_internal.h) is the benchmarks' handle on the chunk size.
#include <cublas_v2.h>

#include <algorithm>
#include <atomic>
#include <type_traits>
#include <unordered_map>

#include "cuda/common.cuh"
#include "cuda/cuda_internal.h"
#include "cuda/layout.h"

namespace int4mm::detail::cuda {
namespace {

namespace L = cuda_layout;

constexpr int kDequantWarps = 4;  // warps per block; each works on its own units
constexpr int kDequantThreads = 32 * kDequantWarps;
constexpr int kDequantMinBlocks = 8;  // per SM: caps registers at 64 (32 warps per SM)
constexpr int kDequantAhead = 4;      // units each warp has loading ahead: 2 KB in flight

// Workspace cap of the default plan: ~128 MB (16-bit), unless kMinChunkRows
// rows need more (K > 32768).
constexpr int64_t kWorkspaceElems = int64_t(64) << 20;
// The default chunk's lower bound: at M = 1024, 2048 rows make 16 x 8 = 128
// output tiles of 128 x 128, about one wave on an H100 (132 SMs).
constexpr int64_t kMinChunkRows = 2048;

// One unit's packed words and the scale/zero pair one lane loads for it.
template <typename TS>
struct Unit {
  uint4 q;           // 16 bytes of lane `lane`
  TS scale, zero;    // of (row lane % 16, group lane / 16 of the step)
};

// float(q - 8) for q = 0..15, exactly: the float with bits 0x4B000000 | q is
// 2^23 + q; subtracting 2^23 + 8 is exact. Cheaper than an I2F per weight.
__device__ __forceinline__ float centered(uint32_t q) {
  return __uint_as_float(0x4B000000u | q) - 8388616.0f;
}

// Two values rounded to a 16-bit TW, packed as the low and high halves.
template <typename TW>
__device__ __forceinline__ uint32_t pack_pair(float lo, float hi) {
  if constexpr (std::is_same_v<TW, half>) {
    const half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  } else {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  }
}

template <typename TW, typename TS>
__global__ void __launch_bounds__(kDequantThreads, kDequantMinBlocks)
    dequantize_kernel(const uint8_t* __restrict__ packed, const TS* __restrict__ sz,
                      TW* __restrict__ w, int64_t ldw, int n, int k, int group_size,
                      int row_begin, int row_end) {
  constexpr int kVec = 16 / int(sizeof(TW));       // k per 16-byte store: 8, or 4 (float)
  constexpr int kChunks = 64 / kVec;                // 16-byte stores per row of a unit
  constexpr int kRowsPerStore = 32 / kChunks;       // rows one warp-wide store covers: 4 or 2
  constexpr int kPasses = 16 / kRowsPerStore;       // stores per lane per unit: 4 or 8
  constexpr int kWords = kVec / 2;                  // packed words a store's k spans: 4 or 2
  using Bits = std::conditional_t<sizeof(TW) == 4, uint32_t, uint16_t>;

  // Per warp. words: [word w][16-byte chunk (lane / 4) ^ w][lane % 4], i.e. the
  // unit transposed so that lanes (g*4 + 0..3) word w are one 16-byte chunk,
  // XOR-swizzled so that the 8 lanes of a 16-byte shared load hit 8 bank groups.
  __shared__ __align__(16) uint32_t words_smem[kDequantWarps][128];
  __shared__ float2 scale_zero_smem[kDequantWarps][2][16];  // [group of the step][row]

  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  uint32_t* words = words_smem[warp];
  float2(*scale_zero)[16] = scale_zero_smem[warp];

  const int steps = (k + 63) / 64;
  const int tile_end = (row_end + 15) / 16;
  const int group_shift = __ffs(group_size) - 1;
  const bool two_groups = group_size == 32;  // a step holds groups 2s and 2s + 1

  // Cursors (tile, step) on this warp's units, one for the next unit to load
  // and one for the next to convert; advance() moves one on by W units.
  const int first = int(blockIdx.x) * kDequantWarps + warp;
  const int stride = int(gridDim.x) * kDequantWarps;
  const int tile_stride = stride / steps;
  const int step_stride = stride % steps;
  const auto advance = [&](int& tile, int& step) {
    tile += tile_stride;
    step += step_stride;
    if (step >= steps) {
      step -= steps;
      ++tile;
    }
  };

  // This lane's scale/zero load: row lane % 16 of the tile, group lane / 16.
  const int sz_row = lane & 15;
  const int sz_group = lane >> 4;
  const auto load = [&](int tile, int step) {
    Unit<TS> u{};
    if (tile < tile_end) {
      u.q = __ldcs(reinterpret_cast<const uint4*>(packed) + (int64_t(tile) * steps + step) * 32 + lane);
      const int row = tile * 16 + sz_row;
      if (row < row_end && (sz_group == 0 || (two_groups && step * 64 + 32 < k))) {
        const int64_t at = ((int64_t((step * 64) >> group_shift) + sz_group) * n + row) * 2;
        u.scale = __ldg(sz + at);
        u.zero = __ldg(sz + at + 1);
      }
    }
    return u;
  };

  // This lane's stores: k = chunk * kVec .. + kVec of the unit, rows
  // lane / kChunks + p * kRowsPerStore. Those k sit in word `word` of lanes
  // (r % 8) * 4 + t0 + j, j < kWords, nibble pair (r / 8) | (upper << 1).
  const int chunk = lane % kChunks;
  const int k_in_step = chunk * kVec;
  const int word = k_in_step >> 4;
  const int t0 = (k_in_step & 7) >> 1;
  const int upper = (k_in_step >> 3) & 1;
  const int group = two_groups && k_in_step >= 32;
  const bool vector_store = (ldw * int64_t(sizeof(TW))) % 16 == 0 &&
                            reinterpret_cast<uintptr_t>(w) % 16 == 0;

  int load_tile = row_begin / 16 + first / steps, load_step = first % steps;
  int tile = load_tile, step = load_step;
  Unit<TS> ahead[kDequantAhead];
#pragma unroll
  for (int u = 0; u < kDequantAhead; ++u) {
    ahead[u] = load(load_tile, load_step);
    advance(load_tile, load_step);
  }

  // tile, step and every branch on them are uniform over the warp, so all 32
  // lanes reach each __syncwarp.
  while (tile < tile_end) {
#pragma unroll
    for (int u = 0; u < kDequantAhead; ++u) {
      if (tile >= tile_end) break;
      __syncwarp();  // the previous unit's shared reads are done
#pragma unroll
      for (int wd = 0; wd < 4; ++wd) {
        const uint32_t v = wd == 0 ? ahead[u].q.x : wd == 1 ? ahead[u].q.y : wd == 2 ? ahead[u].q.z : ahead[u].q.w;
        words[wd * 32 + (((lane >> 2) ^ wd) << 2) + (lane & 3)] = v;
      }
      if (sz_group == 0 || two_groups) {
        scale_zero[sz_group][sz_row] = make_float2(to_float(ahead[u].scale), to_float(ahead[u].zero));
      }
      ahead[u] = load(load_tile, load_step);
      advance(load_tile, load_step);
      __syncwarp();

      const int k0 = step * 64 + k_in_step;
      if (k0 < k) {
#pragma unroll
        for (int p = 0; p < kPasses; ++p) {
          const int r = lane / kChunks + p * kRowsPerStore;
          const int row = tile * 16 + r;
          if (row >= row_end) continue;
          const float2 sc = scale_zero[group][r];
          const int shift = 4 * ((r >> 3) | (upper << 1));
          const uint32_t* src = words + word * 32 + (((r & 7) ^ word) << 2) + t0;
          uint32_t x[kWords];
          if constexpr (kWords == 4) {
            const uint4 v = *reinterpret_cast<const uint4*>(src);
            x[0] = v.x, x[1] = v.y, x[2] = v.z, x[3] = v.w;
          } else {
            const uint2 v = *reinterpret_cast<const uint2*>(src);
            x[0] = v.x, x[1] = v.y;
          }
          uint32_t out[4];  // the 16 bytes of k0 .. k0 + kVec
#pragma unroll
          for (int j = 0; j < kWords; ++j) {
            const uint32_t v = x[j] >> shift;
            const float lo = centered(v & 0xfu) * sc.x + sc.y;          // k0 + 2j
            const float hi = centered((v >> 16) & 0xfu) * sc.x + sc.y;  // k0 + 2j + 1
            if constexpr (sizeof(TW) == 4) {
              out[2 * j] = __float_as_uint(lo);
              out[2 * j + 1] = __float_as_uint(hi);
            } else {
              out[j] = pack_pair<TW>(lo, hi);
            }
          }
          TW* dst = w + int64_t(row - row_begin) * ldw + k0;
          if (vector_store) {
            *reinterpret_cast<uint4*>(dst) = make_uint4(out[0], out[1], out[2], out[3]);
          } else {
#pragma unroll
            for (int i = 0; i < kVec; ++i) {
              if constexpr (sizeof(TW) == 4) {
                reinterpret_cast<Bits*>(dst)[i] = out[i];
              } else {
                reinterpret_cast<Bits*>(dst)[i] = Bits(out[i / 2] >> (16 * (i & 1)));
              }
            }
          }
        }
      }
      advance(tile, step);
    }
  }
}

int64_t l2_cache_bytes() {
  static std::atomic<int> cache[kMaxCachedDevices] = {};
  return cached_per_device(cache, [](int device) {
    int bytes = 0;
    INT4MM_CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrL2CacheSize, device));
    return std::max(bytes, 1);
  });
}

// Dequantizes rows [row_begin, row_end) into w (row 0 of w = row_begin);
// row_begin % 16 == 0.
template <typename TW, typename TS>
void launch_dequantize(const uint8_t* packed, const TS* sz, TW* w, int64_t ldw, int64_t n,
                       int64_t k, int64_t group_size, int64_t row_begin, int64_t row_end,
                       cudaStream_t stream) {
  static std::atomic<int> resident_cache[kMaxCachedDevices] = {};
  const int resident = resident_blocks_per_sm(resident_cache, dequantize_kernel<TW, TS>, kDequantThreads, 0);
  // One warp per unit at least, and no more blocks than are resident at once
  // (every warp then loops over its units: no second, partial wave).
  const int64_t units = (row_end - row_begin + 15) / 16 * ((k + 63) / 64);
  const int64_t blocks = (units + kDequantWarps - 1) / kDequantWarps;
  const int grid = int(std::min<int64_t>(blocks, int64_t(sm_count()) * resident));
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

// The default chunk (before clamping): the largest of
//   - kMinChunkRows (about one wave of GEMM tiles at M = 1024),
//   - one wave of 128 x 128 output tiles at this M (small M needs more rows),
//   - what fits in half of L2.
// On an H100 (L2 50 MB, 132 SMs), 16-bit W, M >= 1024: 2048 rows for every
// bench shape (the L2 term wins only for K < 6400). Small M gets bigger
// chunks, up to the workspace cap. Measured on the H100 against one chunk of
// all N (docs/cuda.md, v4): within 4% either way.
int64_t default_chunk_rows(const MmArgs& args) {
  const int64_t row_bytes = args.k * dtype_size(args.dtype);
  const int64_t in_l2 = l2_cache_bytes() / 2 / row_bytes;
  const int64_t m = std::max<int64_t>(args.m, 1);
  const int64_t one_wave = (int64_t(sm_count()) * 128 * 128 + m - 1) / m;
  return std::max({kMinChunkRows, one_wave, in_l2});
}

// Rows per chunk, a multiple of 16 (the dequantize's tile), of 128 where
// there are that many (cuBLAS tiles), balanced so the last chunk is not a
// sliver: ceil(n / rows) chunks of equal size.
int64_t plan_chunk_rows(int64_t requested, int64_t cap, int64_t n) {
  int64_t rows = std::max<int64_t>(16, std::min(requested, cap));
  if (rows >= n) return (n + 15) / 16 * 16;  // one chunk
  const int64_t unit = rows >= 128 ? 128 : 16;
  rows = rows / unit * unit;
  const int64_t chunks = (n + rows - 1) / rows;
  return ((n + chunks - 1) / chunks + unit - 1) / unit * unit;  // <= rows
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

void dequant_gemm_with(const MmArgs& args, int64_t chunk_rows) {
  const DeviceGuard guard(args.device);
  const cudaStream_t stream = stream_of(*args.options);
  const int64_t elem = dtype_size(args.dtype);
  const int64_t max_rows = L::padded_n(args.n);
  int64_t rows_per_chunk = 0;
  if (chunk_rows > 0) {
    rows_per_chunk = plan_chunk_rows(chunk_rows, max_rows, args.n);
  } else {
    // The fill floor wins over the workspace cap (K = 28672: 117 MB).
    const int64_t cap = std::max(kMinChunkRows, kWorkspaceElems / args.k);
    rows_per_chunk = plan_chunk_rows(default_chunk_rows(args), std::min(cap, max_rows), args.n);
  }
  // A 16-byte aligned buffer (the dequantize's vector stores): rows % 16 == 0, k % 32 == 0.
  cublasHandle_t handle = cublas_handle();
  void* workspace = nullptr;
  INT4MM_CUDA_CHECK(cudaMallocAsync(&workspace, size_t(rows_per_chunk * args.k * elem), stream));
  try {
    INT4MM_CUBLAS_CHECK(cublasSetStream(handle, stream));
    const float alpha = 1.0f, beta = 0.0f;
    const cudaDataType_t type = cuda_dtype(args.dtype);
    for (int64_t row = 0; row < args.n; row += rows_per_chunk) {
      const int64_t rows = std::min(rows_per_chunk, args.n - row);
      dispatch_float(args.dtype, [&](auto tag) {
        using T = decltype(tag);
        launch_dequantize<T, T>(args.packed, static_cast<const T*>(args.sz), static_cast<T*>(workspace),
                                args.k, args.n, args.k, args.group_size, row, row + rows, stream);
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

void dequant_gemm_mm(const MmArgs& args) { dequant_gemm_with(args, 0); }

}  // namespace int4mm::detail::cuda
