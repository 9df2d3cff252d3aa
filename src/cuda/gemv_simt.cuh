// gemv_simt: int4 x float32 GEMV for M <= 4 on the CUDA cores, full float32
// arithmetic (no TF32). Same layout, grid and K split as gemv_mma.cuh; each
// lane dequantizes its own fragment words instead of feeding an mma:
//   nibble pairs -> half2 (q - 8), exact (gemv_mma's dequant_word<half>)
//   -> float2, then FMAs against float32 activations.
// Per group, per lane: part[r][m] = sum A*(q - 8) over its k, asum[m] = sum A
// over its k; the fold scale*part + zero*asum is linear, so the lanes'
// partial folds add up to the full one in the final reduction.
//
// Limitations:
//   1. M <= kM (kM <= 4).
//   2. A rows 8-byte aligned (lda even, base aligned): float2 loads.
#pragma once

#include "cuda/gemv_mma.cuh"

namespace int4mm::detail::cuda {

template <int kGroupSize,  // 32, 64, 128 or 256
          int kM,          // rows of A handled (M <= kM)
          int kWarps,      // warps per block, splitting K
          int kSteps>      // 64-k steps per chunk
__global__ void __launch_bounds__(kWarps * 32)
    gemv_simt_kernel(const float* __restrict__ a,       // [m, k], row stride lda
                     int64_t lda,
                     const uint4* __restrict__ packed,  // layout.h
                     const float* __restrict__ sz,      // [k / kGroupSize, n, 2]
                     float* __restrict__ c,             // [m, n], row stride ldc
                     int64_t ldc, int m, int n, int k) {
  static_assert(kSteps * 64 % kGroupSize == 0, "a chunk must hold whole groups");
  constexpr int kChunkK = kSteps * 64;
  constexpr int kGroupsPerChunk = kChunkK / kGroupSize;
  constexpr int kK16PerGroup = kGroupSize / 16;

  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int g = lane >> 2;
  const int t = lane & 3;
  const int tile = blockIdx.x;
  const int steps = (k + 63) / 64;
  const int chunks = (steps + kSteps - 1) / kSteps;
  const int row0 = tile * 16 + g;
  const int row1 = row0 + 8;
  const uint4* tile_base = packed + int64_t(tile) * steps * 32 + lane;
  const uint64_t policy = l2_evict_first_policy();

  float acc[2][kM] = {};
  for (int chunk = warp; chunk < chunks; chunk += kWarps) {
    uint4 w[kSteps];
#pragma unroll
    for (int i = 0; i < kSteps; ++i) {
      const int step = chunk * kSteps + i;
      w[i] = step < steps ? load_streaming(tile_base + int64_t(step) * 32, policy)
                          : make_uint4(0, 0, 0, 0);
    }
    float2 sz_cur[kGroupsPerChunk][2];
#pragma unroll
    for (int gi = 0; gi < kGroupsPerChunk; ++gi) {
      const int group = chunk * kGroupsPerChunk + gi;
      const bool ok = group * kGroupSize < k;
      sz_cur[gi][0] = ok && row0 < n ? *reinterpret_cast<const float2*>(sz + (int64_t(group) * n + row0) * 2)
                                     : make_float2(0.0f, 0.0f);
      sz_cur[gi][1] = ok && row1 < n ? *reinterpret_cast<const float2*>(sz + (int64_t(group) * n + row1) * 2)
                                     : make_float2(0.0f, 0.0f);
    }

    float part[2][kM] = {};
    float asum[kM] = {};
#pragma unroll
    for (int i = 0; i < kSteps; ++i) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int k16 = i * 4 + j;
        const int kk = chunk * kChunkK + k16 * 16 + 2 * t;
        uint32_t frag[4];
        dequant_word<half>(j == 0 ? w[i].x : j == 1 ? w[i].y : j == 2 ? w[i].z : w[i].w, frag);
        // frag: 0 = (row g, k kk..+1), 1 = (row g+8, kk..+1), 2 = (row g, kk+8..+9), 3 = (row g+8, kk+8..+9)
        const float2 w0 = __half22float2(as_pair<half2>(frag[0]));
        const float2 w1 = __half22float2(as_pair<half2>(frag[1]));
        const float2 w2 = __half22float2(as_pair<half2>(frag[2]));
        const float2 w3 = __half22float2(as_pair<half2>(frag[3]));
#pragma unroll
        for (int r = 0; r < kM; ++r) {
          if (r < m && kk < k) {
            const float* ar = a + int64_t(r) * lda + kk;
            const float2 lo = *reinterpret_cast<const float2*>(ar);
            const float2 hi = *reinterpret_cast<const float2*>(ar + 8);
            part[0][r] += w0.x * lo.x + w0.y * lo.y + w2.x * hi.x + w2.y * hi.y;
            part[1][r] += w1.x * lo.x + w1.y * lo.y + w3.x * hi.x + w3.y * hi.y;
            asum[r] += (lo.x + lo.y) + (hi.x + hi.y);
          }
        }
        if ((k16 + 1) % kK16PerGroup == 0) {
          const int gi = k16 / kK16PerGroup;
#pragma unroll
          for (int r = 0; r < kM; ++r) {
            acc[0][r] += sz_cur[gi][0].x * part[0][r] + sz_cur[gi][0].y * asum[r];
            acc[1][r] += sz_cur[gi][1].x * part[1][r] + sz_cur[gi][1].y * asum[r];
            part[0][r] = part[1][r] = asum[r] = 0.0f;
          }
        }
      }
    }
  }

  // Sum over the 4 lanes of a row (t), then over the warps.
#pragma unroll
  for (int h = 0; h < 2; ++h) {
#pragma unroll
    for (int r = 0; r < kM; ++r) {
      acc[h][r] += __shfl_xor_sync(0xffffffffu, acc[h][r], 1);
      acc[h][r] += __shfl_xor_sync(0xffffffffu, acc[h][r], 2);
    }
  }
  __shared__ float red[kWarps][2][kM][8];
  if (t == 0) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
#pragma unroll
      for (int r = 0; r < kM; ++r) red[warp][h][r][g] = acc[h][r];
    }
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < 2 * kM * 8; idx += kWarps * 32) {
    const int h = idx / (kM * 8);
    const int r = (idx / 8) % kM;
    const int gg = idx % 8;
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) sum += red[w][h][r][gg];
    const int row = tile * 16 + gg + 8 * h;
    if (row < n && r < m) c[int64_t(r) * ldc + row] = sum;
  }
}

}  // namespace int4mm::detail::cuda
