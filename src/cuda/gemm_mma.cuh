// gemm_mma: int4 x {fp16, bf16} for middle M (33..256) on the tensor cores.
//
// Where gemv_mma splits K over a block's warps (each warp its own activation
// slice, fine while A is tiny), this kernel splits N over the warps and K over
// blocks, so that one activation tile in shared memory feeds every warp:
//
//   block (x, y, z): rows [x * 256, +256) = 16 warps x one 16-row tile each,
//                    k steps of split y (whole groups), activation rows
//                    [z * 8 kMTiles, +8 kMTiles)
//   per 64-k step:   A[64 rows][64 k] and every warp's 512 weight bytes ->
//                    one shared-memory stage by cp.async (one 16-byte copy of
//                    each per thread), kGemmStages steps in flight; then
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
constexpr int kGemmAStride = 72; // shared row stride in elements: 144 bytes, conflict-free b-fragment loads
constexpr int kGemmStages = 8;   // cp.async pipeline depth (64-k steps in flight)

// Bytes of one pipeline stage: the A tile, then every warp's 512 weight bytes.
template <typename T, int kMTiles>
constexpr int gemm_stage_bytes() {
  return kMTiles * 8 * kGemmAStride * int(sizeof(T)) + kGemmWarps * 512;
}

// 16-byte global -> shared copy, zero-filled where !valid (src-size 0).
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, bool valid) {
  const uint32_t d = uint32_t(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(valid ? 16 : 0));
}

// The same for streamed weights, with the L2 evict-first policy.
__device__ __forceinline__ void cp_async_16_evict_first(void* dst, const void* src, bool valid,
                                                        uint64_t policy) {
  const uint32_t d = uint32_t(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2, %3;" ::"r"(d), "l"(src),
               "r"(valid ? 16 : 0), "l"(policy));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }

template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(kPending));
}

template <typename T,      // half or __nv_bfloat16
          int kGroupSize,  // 64, 128 or 256
          int kMTiles>     // rows of A per block / 8 (2, 4 or 8; at most kGemmWarps / 2)
__global__ void __launch_bounds__(kGemmWarps * 32, 1)
    gemm_mma_kernel(const T* __restrict__ a,         // [m, k], row stride lda
                    int64_t lda,
                    const uint4* __restrict__ packed,  // layout.h
                    const T* __restrict__ sz,          // [k / kGroupSize, n, 2]
                    float* __restrict__ out,           // [m, n] float32, zeroed; partials added
                    int m, int n, int k, int steps_per_split) {
  static_assert(kGroupSize % 64 == 0, "groups must end on step boundaries");
  static_assert(kMTiles * 8 * 8 <= kGemmWarps * 32, "one 16-byte A copy per thread at most");
  using T2 = typename Pair<T>::type;
  constexpr int kStepsPerGroup = kGroupSize / 64;
  constexpr int kRows = kMTiles * 8;
  constexpr int kABytes = kRows * kGemmAStride * int(sizeof(T));

  extern __shared__ __align__(16) uint8_t stages[];  // kGemmStages x gemm_stage_bytes<T, kMTiles>()
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
  const uint4* w_src = packed + int64_t(tile_ok ? tile : 0) * steps * 32 + lane;
  const uint64_t policy = l2_evict_first_policy();

  // This thread's 16-byte piece of each A tile: row tid / 8, k (tid % 8) * 8.
  const int a_row = threadIdx.x >> 3;
  const int a_col = (threadIdx.x & 7) * 8;
  const bool a_copier = a_row < kRows;
  const bool a_row_ok = a_copier && m0 + a_row < m;
  const T* a_src = a + int64_t(a_row_ok ? m0 + a_row : 0) * lda + a_col;

  auto stage_a = [&](int stage) {
    return reinterpret_cast<T(*)[kGemmAStride]>(stages + stage * gemm_stage_bytes<T, kMTiles>());
  };
  auto stage_w = [&](int stage) {
    return reinterpret_cast<uint4*>(stages + stage * gemm_stage_bytes<T, kMTiles>() + kABytes);
  };
  // Issues the copies of one step into its stage (always commits a group, so
  // that wait_group counts stay uniform).
  auto fetch = [&](int step) {
    if (step < step_end) {
      const int stage = (step - step_begin) % kGemmStages;
      if (a_copier) cp_async_16(&stage_a(stage)[a_row][a_col], a_src + int64_t(step) * 64, a_row_ok);
      cp_async_16_evict_first(stage_w(stage) + warp * 32 + lane, w_src + int64_t(step) * 32,
                              tile_ok, policy);
    }
    cp_async_commit();
  };

  uint32_t ones[4];
  {
    const uint32_t one = as_u32(T2{T(1.0f), T(1.0f)});
    ones[0] = ones[1] = ones[2] = ones[3] = one;
  }
  float acc[kMTiles][4] = {};
  float part[kMTiles][4] = {};
  float asum[4] = {};  // warp w < 8: sum A for m-tile w over the current group

#pragma unroll
  for (int s = 0; s < kGemmStages - 1; ++s) fetch(step_begin + s);
  for (int step = step_begin; step < step_end; ++step) {
    cp_async_wait<kGemmStages - 2>();
    __syncthreads();  // this step's stage is complete; the stage fetched next is free
    fetch(step + kGemmStages - 1);
    const int stage = (step - step_begin) % kGemmStages;
    const T(*a_tile)[kGemmAStride] = stage_a(stage);
    const uint4 w = stage_w(stage)[warp * 32 + lane];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      uint32_t frag[4];
      dequant_word<T>(j == 0 ? w.x : j == 1 ? w.y : j == 2 ? w.z : w.w, frag);
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
        const T* row = &a_tile[mt * 8 + g][j * 16 + 2 * t];
        const uint32_t b0 = *reinterpret_cast<const uint32_t*>(row);
        const uint32_t b1 = *reinterpret_cast<const uint32_t*>(row + 8);
        mma_m16n8k16<T>(part[mt], frag, b0, b1);
        if (warp == mt) mma_m16n8k16<T>(asum, ones, b0, b1);
      }
    }
    if ((step + 1) % kStepsPerGroup == 0) {
      // Group boundary: share sum A, then fold scale and zero in float32.
      if (warp < kMTiles && g == 0) {
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
      for (int mt = 0; mt < kMTiles; ++mt) {
        const float sum_a0 = asum_shared[mt * 8 + 2 * t];
        const float sum_a1 = asum_shared[mt * 8 + 2 * t + 1];
        acc[mt][0] += s0 * part[mt][0] + z0 * sum_a0;
        acc[mt][1] += s0 * part[mt][1] + z0 * sum_a1;
        acc[mt][2] += s1 * part[mt][2] + z1 * sum_a0;
        acc[mt][3] += s1 * part[mt][3] + z1 * sum_a1;
        part[mt][0] = part[mt][1] = part[mt][2] = part[mt][3] = 0.0f;
      }
    }
  }
  cp_async_wait<0>();

  if (!tile_ok) return;
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int row = tile * 16 + g + (e >= 2 ? 8 : 0);
      const int col = m0 + mt * 8 + 2 * t + (e & 1);
      if (row < n && col < m) atomicAdd(out + int64_t(col) * n + row, acc[mt][e]);
    }
  }
}

}  // namespace int4mm::detail::cuda
