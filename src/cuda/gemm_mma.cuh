// gemm_mma: int4 x {fp16, bf16} for any M on the tensor cores (mma.sync),
// dispatched for M = 9..128 on GPUs without wgmma (gemm_wgmma.cuh on Hopper).
//
// Where gemv_mma splits K over a block's warps (each warp its own activation
// slice, fine while A is tiny), this kernel splits N over the warps, so that
// one activation tile in shared memory feeds every warp, and splits the work
// over blocks stream-K style, so that every SM gets the same number of steps
// whatever the shape:
//
//   work unit:   (n-block, m-block, 64-k step); an n-block is kWarps x kNTiles
//                16-row weight tiles, an m-block kMTiles x 8 rows of A.
//   block b:     units [b U / grid, (b + 1) U / grid), step fastest: one or a
//                few runs ("segments") of consecutive steps of one (n, m)
//                block; each segment adds its float32 partial C into a
//                zeroed workspace (red.add), converted to the output dtype by
//                a last small kernel.
//   per step:    A[kMTiles x 8 rows][64 k] and every warp's kNTiles x 512
//                weight bytes -> one shared-memory stage by cp.async,
//                kStages - 1 steps in flight; then per k16: the weight
//                fragments of kNTiles tiles (registers, dequantized once) x
//                the activation fragments of kMTiles tiles (ldmatrix.x4, two
//                m-tiles per instruction, each feeding kNTiles mmas).
//
// Math as gemv_mma (fp32, per group: scale * sum A (q - 8) + zero * sum A,
// no weight rounded): the per-group partials are folded at each group end
// and at each segment end (the fold is linear, so a segment may start or end
// inside a group). sum A comes from a ones-matrix mma that warp w does for
// the m-tiles mt with mt % kWarps == w only; it reaches the other warps
// through shared memory at each fold.
//
// Limitations:
//   1. group_size >= 64, so K % 64 == 0 (group 32 goes to the GEMV or cuBLAS).
//   2. A rows 16-byte aligned (lda % 8 == 0, base aligned): 16-byte copies.
//   3. Weights are re-read once per m-block (from L2 where the blocks of one
//      n-block run together: m-blocks of an n-block are adjacent units).
#pragma once

#include <atomic>

#include "cuda/cuda_internal.h"
#include "cuda/gemv_mma.cuh"

namespace int4mm::detail::cuda {

constexpr int kGemmAStride = 72;  // shared A row stride in elements: 144 bytes, conflict-free ldmatrix

// A launch configuration of gemm_mma (bench/tune_mma.cu compares them).
template <int kMTiles_,  // 8-row activation tiles per block (even: ldmatrix.x4 loads pairs)
          int kNTiles_,  // 16-row weight tiles per warp
          int kWarps_,   // warps per block, side by side along N
          int kStages_>  // cp.async pipeline depth in 64-k steps
struct GemmShape {
  static constexpr int kMTiles = kMTiles_;
  static constexpr int kNTiles = kNTiles_;
  static constexpr int kWarps = kWarps_;
  static constexpr int kStages = kStages_;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kRowsM = kMTiles * 8;
  static constexpr int kRowsN = kWarps * kNTiles * 16;
  template <typename T>
  static constexpr int a_bytes() {
    return kRowsM * kGemmAStride * int(sizeof(T));
  }
  template <typename T>
  static constexpr int stage_bytes() {
    return a_bytes<T>() + kWarps * kNTiles * 512;
  }
  template <typename T>
  static constexpr int smem_bytes() {
    return kStages * stage_bytes<T>();
  }
};

template <typename T,          // half or __nv_bfloat16
          int kGroupSize,      // 64, 128 or 256
          typename Shape>      // GemmShape
__global__ void __launch_bounds__(Shape::kThreads, 1)
    gemm_mma_kernel(const T* __restrict__ a,         // [m, k], row stride lda
                    int64_t lda,
                    const uint4* __restrict__ packed,  // layout.h
                    const T* __restrict__ sz,          // [k / kGroupSize, n, 2]
                    float* __restrict__ out,           // [m, n] float32, zeroed; partials added
                    int m, int n, int k, int64_t units) {
  constexpr int kMTiles = Shape::kMTiles;
  constexpr int kNTiles = Shape::kNTiles;
  constexpr int kWarps = Shape::kWarps;
  constexpr int kStages = Shape::kStages;
  constexpr int kThreads = Shape::kThreads;
  constexpr int kRowsM = Shape::kRowsM;
  constexpr int kABytes = Shape::template a_bytes<T>();
  constexpr int kStageBytes = Shape::template stage_bytes<T>();
  constexpr int kStepsPerGroup = kGroupSize / 64;
  constexpr int kACopies = (kRowsM * 8 + kThreads - 1) / kThreads;  // 16-byte A copies per thread
  constexpr int kOwned = (kMTiles + kWarps - 1) / kWarps;             // m-tiles whose sum A a warp makes
  static_assert(kGroupSize % 64 == 0, "groups must end on step boundaries");
  static_assert(kMTiles % 2 == 0, "ldmatrix.x4 loads two m-tiles");
  using T2 = typename Pair<T>::type;

  extern __shared__ __align__(16) uint8_t stages[];  // kStages x Shape::stage_bytes<T>()
  __shared__ float asum_shared[kRowsM];

  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int g = lane >> 2;
  const int t = lane & 3;
  const int steps = k / 64;
  const int tiles = (n + 15) / 16;
  const int blocks_m = (m + kRowsM - 1) / kRowsM;
  uint32_t ones[4];
  {
    const uint32_t one = as_u32(T2{T(1.0f), T(1.0f)});
    ones[0] = ones[1] = ones[2] = ones[3] = one;
  }
  // ldmatrix.x4 row address of this lane inside an A tile, for m-tile pair 0, k16 0:
  // matrices (mt, k 0-7), (mt, k 8-15), (mt + 1, k 0-7), (mt + 1, k 8-15).
  const int ld_row = (lane >> 4) * 8 + (lane & 7);
  const int ld_col = ((lane >> 3) & 1) * 8;

  const uint32_t smem = uint32_t(__cvta_generic_to_shared(stages));
  const int64_t u_end = units * (blockIdx.x + 1) / gridDim.x;
  for (int64_t u = units * blockIdx.x / gridDim.x; u < u_end;) {
    // One segment: steps [s_begin, s_end) of (n-block nb, m-block mb).
    const int64_t block_pair = u / steps;
    const int s_begin = int(u % steps);
    const int s_end = int(std::min<int64_t>(steps, s_begin + (u_end - u)));
    u += s_end - s_begin;
    const int nb = int(block_pair / blocks_m);
    const int m0 = int(block_pair % blocks_m) * kRowsM;
    const int tile0 = (nb * kWarps + warp) * kNTiles;

    // This thread's copies, set up once per segment: source at step 0, shared
    // offset in a stage, and whether the row / tile exists (else zero-fill).
    const T* a_src[kACopies];
    uint32_t a_dst[kACopies];
    bool a_ok[kACopies];
#pragma unroll
    for (int i = 0; i < kACopies; ++i) {
      const int idx = threadIdx.x + i * kThreads;  // past kRowsM * 8: no copy (fetch skips it)
      const int row = (idx >> 3) % kRowsM, col = (idx & 7) * 8;
      a_ok[i] = m0 + row < m;
      a_src[i] = a + int64_t(a_ok[i] ? m0 + row : 0) * lda + col;
      a_dst[i] = uint32_t((row * kGemmAStride + col) * sizeof(T));
    }
    const uint4* w_src[kNTiles];
    bool w_ok[kNTiles];
#pragma unroll
    for (int nt = 0; nt < kNTiles; ++nt) {
      w_ok[nt] = tile0 + nt < tiles;
      w_src[nt] = packed + int64_t(w_ok[nt] ? tile0 + nt : 0) * steps * 32 + lane;
    }
    const uint32_t w_dst = uint32_t(kABytes + (warp * kNTiles * 32 + lane) * 16);

    // Issues the copies of one step into a stage; always commits a group, so
    // that wait_group counts stay uniform.
    auto fetch = [&](int step, int stage) {
      if (step < s_end) {
        const uint32_t base = smem + uint32_t(stage * kStageBytes);
#pragma unroll
        for (int i = 0; i < kACopies; ++i) {
          if ((kRowsM * 8) % kThreads == 0 || threadIdx.x + i * kThreads < kRowsM * 8) {
            cp_async_16(base + a_dst[i], a_src[i] + step * 64, a_ok[i]);
          }
        }
#pragma unroll
        for (int nt = 0; nt < kNTiles; ++nt) {
          cp_async_16(base + w_dst + nt * 512, w_src[nt] + step * 32, w_ok[nt]);
        }
      }
      cp_async_commit();
    };
    // Scale/zero pairs of one group for rows g and g + 8 of each tile.
    T2 sz_reg[kNTiles][2];
    auto load_sz = [&](int group) {
      const T2 zero2{T(0.0f), T(0.0f)};
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt) {
        const int row = (tile0 + nt) * 16 + g;
        const T* p = sz + (int64_t(group) * n + row) * 2;
        sz_reg[nt][0] = row < n ? *reinterpret_cast<const T2*>(p) : zero2;
        sz_reg[nt][1] = row + 8 < n ? *reinterpret_cast<const T2*>(p + 16) : zero2;
      }
    };

    float acc[kNTiles][kMTiles][4] = {};
    float part[kNTiles][kMTiles][4] = {};  // sum A (q - 8) since the last fold
    float asum[kOwned][4] = {};            // sum A since the last fold, owned m-tiles

#pragma unroll
    for (int s = 0; s < kStages - 1; ++s) fetch(s_begin + s, s);
    load_sz(s_begin / kStepsPerGroup);
    int read_stage = 0, write_stage = kStages - 1;
    for (int step = s_begin; step < s_end; ++step) {
      cp_async_wait<kStages - 2>();
      __syncthreads();  // this step's stage is complete; the stage fetched next is free
      fetch(step + kStages - 1, write_stage);
      write_stage = write_stage == kStages - 1 ? 0 : write_stage + 1;
      const uint8_t* base = stages + read_stage * kStageBytes;
      read_stage = read_stage == kStages - 1 ? 0 : read_stage + 1;
      const auto a_tile = reinterpret_cast<const T(*)[kGemmAStride]>(base);
      uint4 w[kNTiles];
#pragma unroll
      for (int nt = 0; nt < kNTiles; ++nt) {
        w[nt] = reinterpret_cast<const uint4*>(base + kABytes)[(warp * kNTiles + nt) * 32 + lane];
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        uint32_t frag[kNTiles][4];
#pragma unroll
        for (int nt = 0; nt < kNTiles; ++nt) dequant_word<T>(word_of(w[nt], j), frag[nt]);
#pragma unroll
        for (int mt = 0; mt < kMTiles; mt += 2) {
          uint32_t b[4];
          ldmatrix_x4(b, &a_tile[mt * 8 + ld_row][j * 16 + ld_col]);
#pragma unroll
          for (int nt = 0; nt < kNTiles; ++nt) {
            mma_m16n8k16<T>(part[nt][mt], frag[nt], b[0], b[1]);
            mma_m16n8k16<T>(part[nt][mt + 1], frag[nt], b[2], b[3]);
          }
        }
        // sum A of the owned m-tiles: its own fragment load and a ones mma,
        // one warp-uniform branch (a per-m-tile test costs far more).
#pragma unroll
        for (int i = 0; i < kOwned; ++i) {
          const int mt = warp + i * kWarps;
          if (mt < kMTiles) {
            uint32_t b[2];
            ldmatrix_x2(b, &a_tile[mt * 8 + (lane & 7)][j * 16 + ld_col]);
            mma_m16n8k16<T>(asum[i], ones, b[0], b[1]);
          }
        }
      }
      const bool group_end = (step + 1) % kStepsPerGroup == 0;
      if (group_end || step + 1 == s_end) {
        // Fold: share sum A, then acc += scale * part + zero * sum A in float32.
#pragma unroll
        for (int i = 0; i < kOwned; ++i) {
          const int mt = warp + i * kWarps;
          if (mt < kMTiles && g == 0) {
            asum_shared[mt * 8 + 2 * t] = asum[i][0];
            asum_shared[mt * 8 + 2 * t + 1] = asum[i][1];
          }
          asum[i][0] = asum[i][1] = asum[i][2] = asum[i][3] = 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int nt = 0; nt < kNTiles; ++nt) {
          const float s0 = to_float(sz_reg[nt][0].x), z0 = to_float(sz_reg[nt][0].y);
          const float s1 = to_float(sz_reg[nt][1].x), z1 = to_float(sz_reg[nt][1].y);
#pragma unroll
          for (int mt = 0; mt < kMTiles; ++mt) {
            const float2 sum_a = *reinterpret_cast<const float2*>(&asum_shared[mt * 8 + 2 * t]);
            float (&c)[4] = acc[nt][mt];
            float (&p)[4] = part[nt][mt];
            c[0] = fmaf(z0, sum_a.x, fmaf(s0, p[0], c[0]));
            c[1] = fmaf(z0, sum_a.y, fmaf(s0, p[1], c[1]));
            c[2] = fmaf(z1, sum_a.x, fmaf(s1, p[2], c[2]));
            c[3] = fmaf(z1, sum_a.y, fmaf(s1, p[3], c[3]));
            p[0] = p[1] = p[2] = p[3] = 0.0f;
          }
        }
        if (group_end && step + 1 < s_end) load_sz((step + 1) / kStepsPerGroup);
      }
    }
    cp_async_wait<0>();

#pragma unroll
    for (int nt = 0; nt < kNTiles; ++nt) {
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int row = (tile0 + nt) * 16 + g + (e >= 2 ? 8 : 0);
          const int col = m0 + mt * 8 + 2 * t + (e & 1);
          if (row < n && col < m) atomicAdd(out + int64_t(col) * n + row, acc[nt][mt][e]);
        }
      }
    }
    __syncthreads();  // the next segment refills the stages and asum_shared
  }
}

// out (float32 [m, n], row stride n) -> c (row stride ldc), rounded once.
template <typename T>
__global__ void store_output_kernel(const float* __restrict__ out, T* __restrict__ c, int64_t ldc,
                                    int m, int n) {
  const int64_t total = int64_t(m) * n;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    c[(i / n) * ldc + i % n] = from_float<T>(out[i]);
  }
}

// Host side: one gemm_mma call into a caller's float32 workspace of m x n.
// Grid: as many blocks as fit on the device at once (persistent, stream-K),
// at most one per two work units.
template <typename T, int kGroupSize, typename Shape>
void launch_gemm_mma(const T* a, int64_t lda, const void* packed, const T* sz, T* c, int64_t ldc,
                     int m, int n, int k, float* workspace, cudaStream_t stream) {
  auto kernel = gemm_mma_kernel<T, kGroupSize, Shape>;
  constexpr int kSmem = Shape::template smem_bytes<T>();
  static std::atomic<int> occupancy[kMaxCachedDevices] = {};
  const int blocks_per_sm = resident_blocks_per_sm(occupancy, kernel, Shape::kThreads, kSmem);
  const int64_t blocks_n = (int64_t(n) + Shape::kRowsN - 1) / Shape::kRowsN;
  const int64_t blocks_m = (int64_t(m) + Shape::kRowsM - 1) / Shape::kRowsM;
  const int64_t units = blocks_n * blocks_m * (k / 64);
  const int64_t grid = std::max<int64_t>(1, std::min<int64_t>(int64_t(sm_count()) * blocks_per_sm, units / 2));
  INT4MM_CUDA_CHECK(cudaMemsetAsync(workspace, 0, size_t(m) * n * sizeof(float), stream));
  kernel<<<unsigned(grid), Shape::kThreads, kSmem, stream>>>(
      a, lda, static_cast<const uint4*>(packed), sz, workspace, m, n, k, units);
  INT4MM_CUDA_CHECK_LAUNCH("gemm_mma_kernel");
  store_output_kernel<T><<<sm_count() * 4, 256, 0, stream>>>(workspace, c, ldc, m, n);
  INT4MM_CUDA_CHECK_LAUNCH("store_output_kernel");
}

}  // namespace int4mm::detail::cuda
