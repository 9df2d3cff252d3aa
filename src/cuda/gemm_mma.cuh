// gemm_mma: int4 x {fp16, bf16} for middle M (33..256) on the tensor cores.
//
// Where gemv_mma splits K over a block's warps (each warp its own activation
// slice, fine while A is tiny), this kernel splits N over the warps and K over
// blocks, so that one activation tile in shared memory feeds every warp:
//
//   block (x, y, z): rows [x * 256, +256) = 16 warps x one 16-row tile each,
//                    k steps of split y (whole groups), activation rows [z * 64, +64)
//   per 64-k step:   A[64 rows][64 k] -> shared memory (double buffered, one
//                    16-byte load per thread, fetched a step ahead), each warp's
//                    weights (16 bytes per lane, fetched a step ahead) -> registers;
//                    8 m-tiles x 4 k16 mma per warp.
//   split-K:         float32 partials added into a zeroed workspace (red.add),
//                    then converted to the output dtype (dequant_gemm.cu).
//
// Math as gemv_mma (fp32, per group: scale * sum A (q - 8) + zero * sum A);
// sum A comes from a ones-matrix mma that warp w does for m-tile w only, and
// reaches the other warps through shared memory at each group boundary.
//
// Limitations:
//   1. group_size >= 64: groups end on 64-k step boundaries (group 32 falls back).
//   2. A rows 16-byte aligned (lda % 8 == 0, base aligned): 16-byte A loads.
//   3. Weights are re-read once per 64 rows of A (M = 256 reads them 4 times).
#pragma once

#include "cuda/gemv_mma.cuh"

namespace int4mm::detail::cuda {

constexpr int kGemmWarps = 16;   // 16-row tiles per block (warps along N)
constexpr int kGemmMTiles = 8;   // 64 rows of A per block
constexpr int kGemmAStride = 72; // shared row stride in elements: 144 bytes, conflict-free b-fragment loads

template <typename T, int kGroupSize>
__global__ void __launch_bounds__(kGemmWarps * 32, 1)
    gemm_mma_kernel(const T* __restrict__ a,         // [m, k], row stride lda
                    int64_t lda,
                    const uint4* __restrict__ packed,  // layout.h
                    const T* __restrict__ sz,          // [k / kGroupSize, n, 2]
                    float* __restrict__ out,           // [m, n] float32, zeroed; partials added
                    int m, int n, int k, int steps_per_split) {
  static_assert(kGroupSize % 64 == 0, "groups must end on step boundaries");
  using T2 = typename Pair<T>::type;
  constexpr int kStepsPerGroup = kGroupSize / 64;
  constexpr int kRows = kGemmMTiles * 8;

  __shared__ __align__(16) T a_tile[2][kRows][kGemmAStride];
  __shared__ float asum_shared[kRows];

  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int g = lane >> 2;
  const int t = lane & 3;
  const int steps = k / 64;  // k % 64 == 0 here: group_size >= 64
  const int tiles = (n + 15) / 16;
  const int tile = blockIdx.x * kGemmWarps + warp;
  const bool tile_ok = tile < tiles;
  const int step_begin = blockIdx.y * steps_per_split;
  const int step_end = min(steps, step_begin + steps_per_split);
  const int m0 = blockIdx.z * kRows;
  const uint4* w_base = packed + int64_t(tile) * steps * 32 + lane;
  const uint64_t policy = l2_evict_first_policy();

  // This thread's 16-byte piece of each A tile: row tid / 8, k (tid % 8) * 8.
  const int a_row = threadIdx.x >> 3;
  const int a_col = (threadIdx.x & 7) * 8;
  const bool a_row_ok = m0 + a_row < m;
  const T* a_src = a + int64_t(m0 + a_row) * lda + a_col;
  auto load_a = [&](int step) {
    return a_row_ok ? *reinterpret_cast<const uint4*>(a_src + step * 64) : make_uint4(0, 0, 0, 0);
  };
  auto load_w = [&](int step) {
    return tile_ok ? load_streaming(w_base + int64_t(step) * 32, policy) : make_uint4(0, 0, 0, 0);
  };

  uint32_t ones[4];
  {
    const uint32_t one = as_u32(T2{T(1.0f), T(1.0f)});
    ones[0] = ones[1] = ones[2] = ones[3] = one;
  }
  float acc[kGemmMTiles][4] = {};
  float part[kGemmMTiles][4] = {};
  float asum[4] = {};  // warp w < 8: sum A for m-tile w over the current group

  if (step_begin < step_end) {
    uint4 a_cur = load_a(step_begin);
    uint4 w_cur = load_w(step_begin);
    *reinterpret_cast<uint4*>(&a_tile[0][a_row][a_col]) = a_cur;
    __syncthreads();
    for (int step = step_begin; step < step_end; ++step) {
      const int buf = (step - step_begin) & 1;
      const bool more = step + 1 < step_end;
      uint4 a_next = make_uint4(0, 0, 0, 0), w_next = make_uint4(0, 0, 0, 0);
      if (more) {
        a_next = load_a(step + 1);
        w_next = load_w(step + 1);
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        uint32_t frag[4];
        dequant_word<T>(j == 0 ? w_cur.x : j == 1 ? w_cur.y : j == 2 ? w_cur.z : w_cur.w, frag);
#pragma unroll
        for (int mt = 0; mt < kGemmMTiles; ++mt) {
          const T* row = &a_tile[buf][mt * 8 + g][j * 16 + 2 * t];
          const uint32_t b0 = *reinterpret_cast<const uint32_t*>(row);
          const uint32_t b1 = *reinterpret_cast<const uint32_t*>(row + 8);
          mma_m16n8k16<T>(part[mt], frag, b0, b1);
          if (warp == mt) mma_m16n8k16<T>(asum, ones, b0, b1);
        }
      }
      if ((step + 1) % kStepsPerGroup == 0) {
        // Group boundary: share sum A, then fold scale and zero in float32.
        if (warp < kGemmMTiles && g == 0) {
          asum_shared[warp * 8 + 2 * t] = asum[0];
          asum_shared[warp * 8 + 2 * t + 1] = asum[1];
        }
        asum[0] = asum[1] = asum[2] = asum[3] = 0.0f;
        __syncthreads();
        const int group = step / kStepsPerGroup;
        const int row0 = tile * 16 + g;
        const T2 zero2{T(0.0f), T(0.0f)};
        const T* p = sz + (int64_t(group) * n + row0) * 2;
        const T2 sz0 = tile_ok && row0 < n ? *reinterpret_cast<const T2*>(p) : zero2;
        const T2 sz1 = tile_ok && row0 + 8 < n ? *reinterpret_cast<const T2*>(p + 16) : zero2;
        const float s0 = to_float(sz0.x), z0 = to_float(sz0.y);
        const float s1 = to_float(sz1.x), z1 = to_float(sz1.y);
#pragma unroll
        for (int mt = 0; mt < kGemmMTiles; ++mt) {
          const float sum_a0 = asum_shared[mt * 8 + 2 * t];
          const float sum_a1 = asum_shared[mt * 8 + 2 * t + 1];
          acc[mt][0] += s0 * part[mt][0] + z0 * sum_a0;
          acc[mt][1] += s0 * part[mt][1] + z0 * sum_a1;
          acc[mt][2] += s1 * part[mt][2] + z1 * sum_a0;
          acc[mt][3] += s1 * part[mt][3] + z1 * sum_a1;
          part[mt][0] = part[mt][1] = part[mt][2] = part[mt][3] = 0.0f;
        }
      }
      if (more) {
        *reinterpret_cast<uint4*>(&a_tile[buf ^ 1][a_row][a_col]) = a_next;
        w_cur = w_next;
      }
      __syncthreads();
    }
  }

  if (!tile_ok) return;
#pragma unroll
  for (int mt = 0; mt < kGemmMTiles; ++mt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int row = tile * 16 + g + (e >= 2 ? 8 : 0);
      const int col = m0 + mt * 8 + 2 * t + (e & 1);
      if (row < n && col < m) atomicAdd(out + int64_t(col) * n + row, acc[mt][e]);
    }
  }
}

}  // namespace int4mm::detail::cuda
