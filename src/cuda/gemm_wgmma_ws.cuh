// gemm_wgmma_ws: gemm_wgmma for M > 32 (64, 128 and 256 activation rows per
// block) with its copies in a warpgroup of their own (warp specialization,
// as CUTLASS's Hopper kernels do it): 384 threads, one block per SM.
//
//   warps 0-7 (2 warpgroups, 256 threads): as gemm_wgmma's, per 64-k step
//             dequantize 4 weight words into registers and issue 4
//             m64n{kTokens}k16 wgmmas, reading the activations from shared
//             memory; no copies, no block barrier in the main loop
//   warps 8-11: one thread copies each step with the tensor memory
//             accelerator (TMA): the activations (one box of 64 k x kTokens
//             rows, 128B-swizzled as the wgmma descriptor reads it), the 8
//             weight tiles' 512 bytes each (one box) and the scale/zero pairs
//             (one box of 128 rows x the step's groups), zero-filled past
//             M, N and K by the TMA unit
//
// The two sides meet in a ring of kStages one-step stages with two
// shared-memory barriers each: `full` (the copy thread arrives with the
// step's byte count, the TMA unit completes it) and `empty` (each MMA warp
// arrives once the wgmmas that read the stage are done: after the wait for
// all groups but the next step's). The copy thread runs up to kStages steps
// ahead, across tiles: while the MMA warps write one tile's C (through a
// staging buffer of their own, not the ring), the next tile's first stages
// are already coming in. gemm_wgmma instead issues every copy from the MMA
// warps (8 16-byte cp.async per thread and step at 256 rows), waits at a
// block barrier per stage and starts each tile with an empty ring.
//
// Registers: at 256 rows each MMA thread holds 128 float32 accumulators and
// two 16-register fragment buffers; with 384 threads the launch bound leaves
// 168 a thread, so the roles trade with setmaxnreg (MMA warpgroups 232, the
// copy warpgroup 40). With one copy warp (288 threads, 224 a thread) ptxas
// serialized the wgmmas (C7512) at 256 rows.
//
// Same work split (whole tiles, stream-K for the last partial wave, or each
// tile split over the blocks of a cluster: WgmmaWork), tile order, numerics
// and epilogue as gemm_wgmma. Whole-tile grids are persistent (one block per
// SM, each taking every SMs-th tile) unless asked otherwise. A cluster's
// blocks run one segment each, so their parts meet in the ring's memory
// (wgmma_cluster_store), and the copy warps, done early, wait at the two
// cluster barriers with them.
//
// Measured on an H100 (docs/cuda.md, v13-v15): 1.04-1.10x faster than
// gemm_wgmma at M = 1024-4096, up to 1.23x at M = 128 on the largest
// shapes, 1.05-1.22x in clusters at M = 128-256, 1.03-1.14x at M = 64 where
// tiles split or fit one per SM. At 16 and 32 rows
// (configurations the workbench keeps: one block per SM, or two with 96
// registers a thread, kBlocks) at best 1.04x faster than gemm_wgmma and
// gemv_mma, on shapes that meet their targets without it, so dispatch takes
// it from 64 rows (gemm.cu, takes_wgmma_ws).
//
// 256 weight rows per block (kRowsN, v17): each MMA warp dequantizes a
// 16-row tile of both 128-row halves per step and issues each half's
// wgmmas against the one activation tile, so a block reads each activation
// tile once per 256 weight rows (one TMA box, then two weight boxes and two
// scale/zero boxes a step; a half past N comes in zero-filled). Dispatched
// at 64 activation rows only, where the tiles split stream-K over long runs
// (gemm.cu, plan_dispatch): 1.05-1.13x faster on the largest weights, slower
// where the tiles split finely (each split tile hands on twice the float32
// part).
//
// Limitations (beyond gemm_wgmma's, checked by wgmma_ws_supports): the
// tensor maps need A, the packed weights and scales_and_zeros 16-byte
// aligned and N % 4 == 0 (scale/zero rows 16-byte multiples).
#pragma once

#include "cuda/gemm_wgmma.cuh"
#include "cuda/tma.cuh"

namespace int4mm::detail::cuda {

template <int kTokens_, int kStages_, int kGroupSize, int kBlocks_, int kRowsN_>
struct WgmmaWsPlan {
  // One step's layout and C staging for 128 weight rows (its stage count unused).
  using Step = WgmmaPlan<kTokens_, 4, kGroupSize, 1>;
  static constexpr int kTokens = kTokens_;
  static constexpr int kStages = kStages_;
  static constexpr int kBlocks = kBlocks_;  // blocks per SM: 1, or 2 up to 32 rows
  // Weight rows per block: 128, or 256 in two halves of 128 (each MMA warp
  // a 16-row tile of each), which read one activation tile.
  static constexpr int kRowsN = kRowsN_;
  static constexpr int kHalves = kRowsN / kWgmmaRowsN;
  static_assert(kHalves == 1 || (kHalves == 2 && kTokens <= 128), "256 weight rows hold 2 x kTokens / 2 accumulators");
  static constexpr int kThreads = 384;     // 2 MMA warpgroups and the copy warpgroup
  static constexpr int kMmaThreads = 256;
  // Registers per thread after the roles part (setmaxnreg): the copy
  // warpgroup gives its share to the MMA warpgroups, within the block's
  // launch allocation (384 x 168 = 64512 registers at one block per SM,
  // 384 x 80 at two): 256 x 232 + 128 x 40, or 256 x 96 + 128 x 40.
  static constexpr int kMmaRegisters = kBlocks == 1 ? 232 : 96;
  static constexpr int kCopyRegisters = 40;
  static_assert(kBlocks == 1 || (kBlocks == 2 && kTokens <= 32), "two blocks per SM hold 96 registers a thread");
  // A step's stage: the activation tile, then each half's weight tiles and
  // scale/zero pairs (Step's layout from the half's offset on).
  static constexpr int kHalfBytes = Step::kWBytes + Step::kSzBytes;
  static constexpr int kCopyBytes = Step::kABytes + kHalves * kHalfBytes;  // a step's boxes
  static constexpr int kStepBytes = (kCopyBytes + 1023) / 1024 * 1024;
  static constexpr int kOutTokens = kTokens < 128 ? kTokens : 128;                    // C staged in parts
  static constexpr int kOutBytes = kOutTokens * Step::kOutStride * 2;
  // The ring, the C staging, 2 barriers per stage; + 1024: the ring starts
  // at the first 1024-aligned shared address.
  static constexpr int kSmemBytes = kStages * kStepBytes + kOutBytes + 2 * kStages * 8 + 1024;
  static_assert(kOutBytes % 16 == 0, "barriers 8-byte aligned");
  static_assert(kStages * kStepBytes >= kHalves * Step::kPartBytes, "a cluster's float32 parts fit the ring");
  static_assert(kHalfBytes % 128 == 0, "TMA boxes 128-byte aligned");
  static_assert(kSmemBytes <= 227 * 1024, "a block's shared memory on Hopper");
};

template <typename T,      // half or __nv_bfloat16
          int kGroupSize,  // 32..256
          int kTokens,     // activation rows per block (wgmma N): 16..256, dispatched at 64, 128 and 256
          int kStages,     // one-step stages in the ring
          int kBlocks,     // blocks per SM (registers: WgmmaWsPlan)
          int kRowsN>      // weight rows per block: 128 or 256 (WgmmaWsPlan)
__global__ void __launch_bounds__(384, kBlocks)
    gemm_wgmma_ws_kernel(const __grid_constant__ CUtensorMap a_map,   // A [m, k] (launch_gemm_wgmma_ws)
                         const __grid_constant__ CUtensorMap w_map,   // packed, uint32 [tiles][steps x 128]
                         const __grid_constant__ CUtensorMap sz_map,  // scales_and_zeros, uint32 [groups][n]
                         T* __restrict__ c,                           // [m, n], row stride ldc
                         int64_t ldc,
                         int* __restrict__ arrivals,      // [tiles], zeroed (stream-K grids only)
                         float4* __restrict__ partials,   // [grid][2][kTokens / 8][256] (likewise)
                         int m, int n, int k, int64_t dp_tiles, bool vector_c,
                         bool cluster_split) {  // the blocks of a split tile are a cluster
#if defined(INT4MM_WGMMA)
  using Plan = WgmmaWsPlan<kTokens, kStages, kGroupSize, kBlocks, kRowsN>;
  using Step = typename Plan::Step;
  constexpr int kStepBytes = Plan::kStepBytes;
  constexpr int kHalves = Plan::kHalves;
  constexpr int kAcc = kTokens / 2;  // float32 accumulators per MMA thread and half

  extern __shared__ uint8_t smem_raw[];
  const uint32_t smem_raw_address = uint32_t(__cvta_generic_to_shared(smem_raw));
  const uint32_t smem = (smem_raw_address + 1023) & ~1023u;
  uint8_t* const smem_ptr = smem_raw + (smem - smem_raw_address);
  T* const staged = reinterpret_cast<T*>(smem_ptr + kStages * kStepBytes);
  const uint32_t full = smem + kStages * kStepBytes + Plan::kOutBytes;  // kStages barriers, 8 bytes each
  const uint32_t empty = full + kStages * 8;

  const int tid = threadIdx.x;
  const int steps = (k + 63) / 64;
  const int64_t tiles = int64_t((n + kRowsN - 1) / kRowsN) * ((m + kTokens - 1) / kTokens);
  if (tid == 0) {
    for (int s = 0; s < kStages; ++s) {
      mbarrier_init(full + 8 * s, 1);
      mbarrier_init(empty + 8 * s, Plan::kMmaThreads / 32);
    }
    mbarrier_init_fence();
  }
  __syncthreads();  // the only block-wide barrier: the roles part here
  WgmmaWork work(tiles, steps, dp_tiles);
  // Launched with PDL: nothing global is read or written before the kernel
  // ahead of this one in the stream has finished (a no-op otherwise).
  grid_dependency_wait();
  int64_t pair;
  int s_begin, s_end;
  int slot = 0;         // the ring's stage of the next step
  uint32_t phase = 0;   // its barriers' phase parity

  if (tid >= Plan::kMmaThreads) {
    set_max_registers<false, Plan::kCopyRegisters>();
    if (tid == Plan::kMmaThreads) {
      // The copy thread: each step into the next stage once the MMA warps
      // are done with it (the first round's stages are free: a new
      // barrier's "previous" phase counts as completed).
      while (work.next(pair, s_begin, s_end)) {
        const WgmmaTile tile = wgmma_tile<kTokens, kRowsN>(pair, m, n);
        for (int s = s_begin; s < s_end; ++s) {
          const uint32_t stage = smem + uint32_t(slot * kStepBytes), bar = full + 8 * slot;
          mbarrier_wait(empty + 8 * slot, phase ^ 1);
          mbarrier_arrive_expect_tx(bar, Plan::kCopyBytes);
          tma_load_2d(stage, &a_map, s * 64, tile.m0, bar);
#pragma unroll
          for (int h = 0; h < kHalves; ++h) {
            const uint32_t half = stage + uint32_t(Step::kABytes + h * Plan::kHalfBytes);
            const int row0 = tile.nb * kRowsN + h * kWgmmaRowsN;
            tma_load_2d(half, &w_map, s * 128, row0 / 16, bar);
            tma_load_2d(half + Step::kWBytes, &sz_map, row0, s * 64 / kGroupSize, bar);
          }
          if (++slot == kStages) slot = 0, phase ^= 1;
        }
      }
    }
    if (cluster_split) {  // the MMA warps' two cluster barriers per half (wgmma_cluster_store)
      for (int barrier = 0; barrier < 2 * kHalves; ++barrier) {
        cluster_arrive_relaxed();
        cluster_wait();
      }
    }
    return;
  }

  // The MMA warps.
  set_max_registers<true, Plan::kMmaRegisters>();
  const uint64_t a_desc = sw128_descriptor(smem);  // stage 0's activation tile
  const bool arriver = (tid & 31) == 0;            // one arrival per warp on `empty`
  auto sync = [] { named_barrier_sync(1, Plan::kMmaThreads); };
  float acc[kHalves][kAcc];
  uint32_t frag[2][4][4];
  while (work.next(pair, s_begin, s_end)) {
    const WgmmaTile tile = wgmma_tile<kTokens, kRowsN>(pair, m, n);
#pragma unroll
    for (int h = 0; h < kHalves; ++h) {
#pragma unroll
      for (int i = 0; i < kAcc; ++i) acc[h][i] = 0.0f;
    }
    // A step: wait for its stage; per half, dequantize into a register
    // buffer (free: the wgmmas that read it, a half or a step ago, are done)
    // and issue the wgmmas, then wait for all groups but this one. Free the
    // stage of the step before. `parity`: the step's, which picks the
    // buffers at one half per step (two alternate within a step at two).
    int previous = -1;
    auto run_step = [&](int parity) {
      mbarrier_wait(full + 8 * slot, phase);
      const uint32_t offset = uint32_t(slot * kStepBytes);
#pragma unroll
      for (int h = 0; h < kHalves; ++h) {
        wgmma_step<T, Step>(smem_ptr + offset + h * Plan::kHalfBytes, descriptor_at(a_desc, offset), acc[h],
                            frag[(parity * kHalves + h) & 1], tid);
        wgmma_wait<1>();
      }
      if (arriver && previous >= 0) mbarrier_arrive(empty + 8 * previous);
      previous = slot;
      if (++slot == kStages) slot = 0, phase ^= 1;
    };
    const int len = s_end - s_begin;
    int i = 0;
    for (; i + 2 <= len; i += 2) {
      run_step(0);
      run_step(1);
    }
    if (i < len) run_step(0);
    wgmma_wait<0>();
#pragma unroll
    for (int h = 0; h < kHalves; ++h) {
#pragma unroll
      for (int j = 0; j < kAcc; ++j) fence_operand(acc[h][j]);
    }
    if (arriver) mbarrier_arrive(empty + 8 * previous);
    // The next kernel's blocks may launch from here (they wait for this
    // grid to finish): its launch overlaps this epilogue.
    grid_dependents_launch();

    if (cluster_split) {
      // The ring is free: the copy thread's only segment was this one, and
      // every MMA warp is past the wgmmas that read its last stage. Each
      // half's part in a memory of its own.
      sync();
#pragma unroll
      for (int h = 0; h < kHalves; ++h) {
        wgmma_cluster_store<T, Step>(acc[h], reinterpret_cast<float*>(smem_ptr + h * Step::kPartBytes), c, ldc,
                                     tile.m0, tile.nb * kRowsN + h * kWgmmaRowsN, m, n, vector_c, tid);
      }
      continue;  // (the block's only segment)
    }
    if (s_end - s_begin < steps) {
      __shared__ bool finisher;
      // The halves' accumulators as one part (the workspace holds kHalves x
      // kAcc a thread: launch_gemm_wgmma_ws). Up to 64 tokens, one block per
      // SM and one half, the finisher reads 3 parts at once (v20: 1.02-1.04x
      // on 14336 x 4096 at M = 64); elsewhere one at a time (2 of two halves
      // were 0.98-1.01x, 2 at 128 tokens spilled).
      constexpr int kFixupBatch = kBlocks == 1 && kTokens <= 64 && kHalves == 1 ? 3 : 1;
      if (!wgmma_fixup<kHalves * kAcc, kFixupBatch>(reinterpret_cast<float(&)[kHalves * kAcc]>(acc), work, pair,
                                                    arrivals, partials, tid, finisher, sync)) {
        continue;
      }
    }
#pragma unroll
    for (int h = 0; h < kHalves; ++h) {
      wgmma_store_c<T, Step, Plan::kOutTokens>(acc[h], staged, c, ldc, tile.m0, tile.nb * kRowsN + h * kWgmmaRowsN,
                                               m, n, vector_c, tid, sync);
    }
  }
#endif  // INT4MM_WGMMA
}

// True where gemm_wgmma_ws can take these operands (gemm_wgmma's, and the
// tensor maps' alignment: file comment).
inline bool wgmma_ws_supports(const void* a, int64_t lda, const void* packed, const void* sz, int n) {
  auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return aligned(a) && lda % 8 == 0 && aligned(packed) && aligned(sz) && n % 4 == 0;
}

// Host side: the grid of one gemm_wgmma_ws call on its kBlocks block slots
// per SM. kNone: whole tiles, one block per slot taking every slots-th tile
// where `persistent` (its copy thread fetches a block's next tile while its
// MMA warps write the last), else one block per tile; kCluster: each tile
// split over a cluster as plan_gemm_wgmma splits it (the size for the slots,
// wgmma_cluster_size) where those clusters fit at once, else kStreamK:
// wgmma_stream_k_grid. PDL for one wave without a workspace where the next
// call's blocks cannot double up on SMs that this call leaves partly free
// (one block per SM, or every slot taken: plan_gemm_wgmma's comment).
template <typename T, int kGroupSize, int kTokens, int kStages, int kBlocks, int kRowsN>
WgmmaGrid plan_gemm_wgmma_ws(int m, int n, int k, WgmmaSplit split, bool persistent) {
  using Plan = WgmmaWsPlan<kTokens, kStages, kGroupSize, kBlocks, kRowsN>;
  const int64_t tiles = (int64_t(n) + kRowsN - 1) / kRowsN * ((int64_t(m) + kTokens - 1) / kTokens);
  const int64_t steps = (int64_t(k) + 63) / 64;
  if (tiles * steps == 0) return WgmmaGrid{0, 0, 1};
  const int64_t sms = sm_count(), slots = sms * kBlocks;
  WgmmaGrid grid{persistent ? std::min(tiles, slots) : tiles, tiles, 1};
  if (split != WgmmaSplit::kNone) grid = wgmma_stream_k_grid(tiles, steps, slots);
  const int size = wgmma_cluster_size(tiles, steps, slots, slots);
  if (split == WgmmaSplit::kCluster && size > 0) {
    auto kernel = gemm_wgmma_ws_kernel<T, kGroupSize, kTokens, kStages, kBlocks, kRowsN>;
    static std::atomic<int> occupancy[kMaxCachedDevices] = {};
    static std::atomic<int> clusters[kWgmmaMaxCluster + 1][kMaxCachedDevices] = {};
    resident_blocks_per_sm(occupancy, kernel, Plan::kThreads, Plan::kSmemBytes);  // allows its shared memory
    if (resident_clusters(clusters[size], kernel, Plan::kThreads, Plan::kSmemBytes, size) >= tiles) {
      grid = WgmmaGrid{size * tiles, 0, size};
    }
  }
  grid.pdl = (grid.dp_tiles == tiles || grid.cluster > 1) && (grid.blocks <= sms ? kBlocks == 1 : grid.blocks == slots);
  return grid;
}

// Host side: one gemm_wgmma_ws call on `grid` (plan_gemm_wgmma_ws's, or any
// grid of its kinds); the workspace as launch_gemm_wgmma's. scales_and_zeros
// has a row stride of ldsz (scale, zero) pairs: n for a whole call, the whole
// call's n where this call takes a range of its columns (gemm.cu's tail).
template <typename T, int kGroupSize, int kTokens, int kStages, int kBlocks, int kRowsN>
void launch_gemm_wgmma_ws(const T* a, int64_t lda, const void* packed, const T* sz, int64_t ldsz, T* c, int64_t ldc,
                          int m, int n, int k, const WgmmaGrid& grid, void* workspace, size_t workspace_bytes,
                          cudaStream_t stream) {
  using Plan = WgmmaWsPlan<kTokens, kStages, kGroupSize, kBlocks, kRowsN>;
  auto kernel = gemm_wgmma_ws_kernel<T, kGroupSize, kTokens, kStages, kBlocks, kRowsN>;
  if (grid.blocks == 0) return;
  static std::atomic<int> occupancy[kMaxCachedDevices] = {};
  static std::atomic<int> pdl_cache[kMaxCachedDevices] = {};
  resident_blocks_per_sm(occupancy, kernel, Plan::kThreads, Plan::kSmemBytes);  // allows its shared memory
  const int64_t steps = (int64_t(k) + 63) / 64;
  const int64_t weight_tiles = (int64_t(n) + 15) / 16;
  const int64_t tiles = (int64_t(n) + kRowsN - 1) / kRowsN * ((int64_t(m) + kTokens - 1) / kTokens);
  const CUtensorMap a_map = make_tensor_map_2d(a, 2, k, m, lda * 2, 64, kTokens, true);
  const CUtensorMap w_map = make_tensor_map_2d(packed, 4, steps * 128, weight_tiles, steps * 512, 128, 8, false);
  const CUtensorMap sz_map =
      make_tensor_map_2d(sz, 4, n, k / kGroupSize, ldsz * 4, kWgmmaRowsN, Plan::Step::kSzGroups, false);
  const bool vector_c = ldc % 8 == 0 && reinterpret_cast<uintptr_t>(c) % 16 == 0;
  const bool no_workspace = grid.dp_tiles == tiles || grid.cluster > 1;
  // (As gemm_wgmma's: with a workspace, after the kernel that zeroes its counters.)
  const bool pdl = (no_workspace ? grid.pdl : zeroed_by_kernel()) && pdl_allowed(pdl_cache, kernel);
  // (The workspace's parts as those of kHalves x kTokens rows: wgmma_fixup
  // takes the halves' accumulators as one.)
  with_wgmma_workspace<kTokens * Plan::kHalves>(
      grid, tiles, !no_workspace, workspace, workspace_bytes, stream, [&](int* arrivals, float4* partials) {
        launch_kernel(kernel, unsigned(grid.blocks), Plan::kThreads, Plan::kSmemBytes, stream, pdl,
                      unsigned(grid.cluster), "gemm_wgmma_ws_kernel", a_map, w_map, sz_map, c, ldc, arrivals,
                      partials, m, n, k, grid.dp_tiles, vector_c, grid.cluster > 1);
      });
}

}  // namespace int4mm::detail::cuda
