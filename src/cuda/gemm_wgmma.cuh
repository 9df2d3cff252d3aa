// gemm_wgmma: int4 x {fp16, bf16} on Hopper's warpgroup MMA (wgmma, sm_90a),
// dispatched for M >= 17 (9 on large weights) on compute capability 9.0.
//
// The weights are wgmma's A operand, dequantized in registers: a warpgroup
// (4 warps) owns 64 weight rows, each warp one 16-row tile of the CUDA layout
// (layout.h), whose packed word per k16 already is that warp's A fragment.
// The activations are the B operand, kTokens rows of A (wgmma's N) read from
// shared memory by the tensor cores, so one activation tile feeds both
// warpgroups of a block without passing through registers:
//
//   block:     128 weight rows (2 warpgroups) x kTokens activation rows
//   per step:  64 k; A [kTokens][64] (128-byte rows, 128B-swizzled: the
//              wgmma descriptor's K-major layout), the 8 tiles' 4 KB of
//              weights and the step's scale/zero pairs, copied by cp.async;
//              a shared stage holds kSub steps, kStages - 2 stages ahead
//   per step:  each thread dequantizes 4 words (8 weights each, one per
//              k16) into one of two register buffers, w = (q - 8) * scale
//              + zero, rounded once to T; then 4 m64n{kTokens}k16 wgmmas as
//              one group, and a wait for all groups but that one, so the
//              tensor cores work on one step while the next is dequantized
//   per stage: one cp.async wait and block barrier (kSub = 2 halves them
//              where they cost most: 16-32 activation rows, v7)
//
// Why kStages - 2: the fragment registers and the stage a wgmma reads must
// stay untouched until it completes. When every thread reaches the barrier
// of stage s, each has waited for the groups of all steps but the last one
// before it, so stage s - 2 can be refilled, and the register buffer of a
// step is that of the step two before it. The step loop is unrolled over
// the ring of kStages x kSub steps, so that shared-memory offsets and wgmma
// descriptors are immediates (v7: 165 -> 117 instructions per step at 16
// activation rows, 109 with two steps per stage; 60 are the dequantization).
//
// Numerics: each weight is rounded to T before the product, as the
// dequantize + cuBLAS path this kernel replaces does (gemv_mma and gemm_mma
// keep q - 8 exact and fold scale and zero in float32 instead; the wgmma
// accumulators cannot be folded per group without stalling the pipeline).
// Products accumulate in float32; C is rounded once.
//
// Work split: tiles of (128 weight rows, kTokens activation rows); a
// persistent grid takes whole waves of tiles data-parallel and splits the
// last partial wave stream-K, in units of 64-k steps, step fastest (each
// block's run of units cut into segments at tile boundaries). A segment that
// is a whole tile writes C directly (through shared memory, 16-byte rows);
// the blocks sharing a split tile (at most 2 segments per block: its first
// and last) leave float32 partials in the workspace and the last to arrive
// adds them up, in block order whichever block that is (v23: C does not
// depend on the timing), and writes C: no zeroed float32 C, no conversion
// kernel. The workspace's arrival counters are zeroed by a one-block kernel
// that lets the call's launch start at once (programmatic dependent
// launch), where a memset would hold it back (v23).
// With fewer tiles than blocks, the grid shrinks to a whole number of blocks
// per tile where that keeps >= 90% of them (v8): each block then runs one
// segment (one pipeline fill), K split evenly. Or (v10, K <= 8192) each tile
// is split evenly over the 2..8 blocks of a thread-block cluster, which add
// up their parts through distributed shared memory, each block writing its
// share of the tile's rows of C: no workspace, no counters, no memset, and
// the same sums whichever block finishes last. One block per tile (nothing
// split) is the other choice (dispatch: gemm.cu).
//
// Limitations:
//   1. sm_90a only (dispatch checks compute capability 9.0; the sm_80 build
//      of this kernel is empty).
//   2. A rows 16-byte aligned (lda % 8 == 0, base aligned): 16-byte copies.
//      scales_and_zeros 4-byte aligned.
//   3. Tokens past M are computed on zeros (kTokens = 64 at M = 40 wastes 38%).
//   4. cp.async without an L2 evict-first hint (see cp_async_16).
//   5. A cluster split is taken only where all its clusters fit the GPU at
//      once, as cudaOccupancyMaxActiveClusters counts them (a cluster's
//      blocks share a GPC, so sizes that do not divide a GPC's SMs fit fewer
//      than SMs / size).
//
// At 128 and 256 activation rows without clusters, dispatch takes
// gemm_wgmma_ws instead (gemm_wgmma_ws.cuh: the same steps with the copies
// in a warpgroup of their own), where its operands allow.
//
// Launch (v11): grids without a workspace (one block per tile, clusters) in
// one wave launch with programmatic dependent launch: the kernel waits for
// the one before it in the stream before it touches global memory, and lets
// the next one launch once its main loop is done, so that launch and
// placement overlap the epilogue (plan_gemm_wgmma says where). Stream-K
// grids launch with it after the kernel that zeroes their counters (v23),
// which itself waits for the call before.
#pragma once

#include <cooperative_groups.h>

#include <algorithm>
#include <atomic>

#include "cuda/cuda_internal.h"
#include "cuda/gemm_mma.cuh"
#include "cuda/gemv_mma.cuh"
#include "cuda/wgmma.cuh"

namespace int4mm::detail::cuda {

// Weight rows per gemm_wgmma block: 2 warpgroups x 64 (8 tiles, one per warp).
constexpr int kWgmmaRowsN = 128;
// Blocks per cluster at most (the portable cluster size).
constexpr int kWgmmaMaxCluster = 8;

// Block geometry and shared-memory plan of one gemm_wgmma configuration.
template <int kTokens_, int kStages_, int kGroupSize_, int kSub_>
struct WgmmaPlan {
  static constexpr int kTokens = kTokens_;
  static constexpr int kGroupSize = kGroupSize_;
  static constexpr int kStages = kStages_;
  static constexpr int kSub = kSub_;     // 64-k steps per stage (and per block barrier)
  static constexpr int kThreads = 256;  // 2 warpgroups
  static constexpr int kRowsN = kWgmmaRowsN;
  static constexpr int kSzGroups = kGroupSize >= 64 ? 1 : 64 / kGroupSize;  // groups per step
  static constexpr int kABytes = kTokens * 128;           // a multiple of 1024: swizzle atoms
  static constexpr int kWBytes = 8 * 512;
  static constexpr int kSzBytes = kSzGroups * kRowsN * 4;
  static constexpr int kStepBytes = (kABytes + kWBytes + kSzBytes + 1023) / 1024 * 1024;
  static constexpr int kStageBytes = kSub * kStepBytes;
  static constexpr int kOutStride = kRowsN + 8;           // staged C row, in elements: 16 bytes of pad
  static constexpr int kOutBytes = kTokens * kOutStride * 2;
  static constexpr int kPartStride = kRowsN + 4;          // float32 partial C row (clusters): 16 bytes of pad
  static constexpr int kPartBytes = kTokens * kPartStride * 4;
  // + 1024: the stages start at the first 1024-aligned shared address.
  static constexpr int kSmemBytes = std::max({kStages * kStageBytes, kOutBytes, kPartBytes}) + 1024;
  static_assert(kTokens % 16 == 0 && kTokens <= 256, "wgmma N: 16..256");
  static_assert(kStages >= 3, "one stage read, one draining, one filling");
  static_assert(kStages * kSub % 2 == 0, "consecutive steps alternate two register buffers");
  static_assert(kSzGroups * kRowsN <= kThreads, "one scale/zero copy per thread");
};

// Blocks per SM that gemm_wgmma's launch bounds ask registers for: two up to
// 64 activation rows (128 registers a thread), one above.
constexpr int wgmma_min_blocks(int tokens) { return tokens <= 64 ? 2 : 1; }

// Shared-memory descriptor of a K-major B tile with 128-byte rows, 128B
// swizzle, 8-row groups 1024 bytes apart (PTX ISA, "Matrix Descriptor Format").
__device__ __forceinline__ uint64_t sw128_descriptor(uint32_t address) {
  return uint64_t((address & 0x3ffff) >> 4)  // start address
         | uint64_t(1) << 16                 // leading byte offset: unused with swizzle
         | uint64_t(1024 >> 4) << 32         // stride byte offset: next 8 rows
         | uint64_t(1) << 62;                // 128B swizzle
}

// The descriptor of the tile `bytes` past the one `desc` describes: the
// start address field (address / 16) cannot overflow into the next field,
// as shared addresses stay below 2^18.
__device__ __forceinline__ uint64_t descriptor_at(uint64_t desc, uint32_t bytes) { return desc + (bytes >> 4); }

// Stores src[0, 8) at dst, or its first `count` elements where count < 8: one
// 16-byte store where `vector` (dst 16-byte aligned) and count >= 8.
template <typename T>
__device__ __forceinline__ void store_8(T* dst, const T* src, int count, bool vector) {
  if (vector && count >= 8) {
    *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
  } else {
    for (int e = 0; e < 8 && e < count; ++e) dst[e] = src[e];
  }
}

// 4-byte global -> shared copy, zero-filled where !valid.
__device__ __forceinline__ void cp_async_4(uint32_t d, const void* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(d), "l"(src), "r"(valid ? 4 : 0));
}

// Makes this thread's completed cp.async writes visible to the tensor cores
// (the async proxy), before the barrier that publishes them.
__device__ __forceinline__ void fence_proxy_async_shared() {
#if defined(INT4MM_WGMMA)
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
#endif
}

// One block's work (the kernel comment's work split): tiles [0, dp_tiles)
// data-parallel, block b taking b, b + G, ... (G = gridDim.x), whole; the rest
// stream-K, their units (64-k steps, step fastest) split evenly, block b
// taking units [b U / G, (b + 1) U / G). With a cluster split, every tile is
// split over the G / tiles blocks of one cluster (dp_tiles = 0: block b's
// units lie in tile b / (G / tiles)). next() gives the block's segments in
// order: steps [s_begin, s_end) of tile `tile`.
struct WgmmaWork {
  int64_t grid, units, dp_tiles, next_dp, u, u_end;
  int steps;

  __device__ WgmmaWork(int64_t tiles, int steps_, int64_t dp_tiles_)
      : grid(gridDim.x), units((tiles - dp_tiles_) * steps_), dp_tiles(dp_tiles_), next_dp(blockIdx.x),
        u(units * blockIdx.x / grid), u_end(units * (blockIdx.x + 1) / grid), steps(steps_) {}

  __device__ bool next(int64_t& tile, int& s_begin, int& s_end) {
    if (next_dp < dp_tiles) {
      tile = next_dp;
      next_dp += grid;
      s_begin = 0, s_end = steps;
      return true;
    }
    if (u >= u_end) return false;
    tile = dp_tiles + u / steps;
    s_begin = int(u % steps);
    s_end = int(std::min<int64_t>(steps, s_begin + (u_end - u)));
    u += s_end - s_begin;
    return true;
  }

  // The first stream-K unit of `tile` (a split one), and the blocks owning
  // its units (each owns at least 2: wgmma_stream_k_grid).
  __device__ int64_t tile_begin(int64_t tile) const { return (tile - dp_tiles) * steps; }
  __device__ int64_t owner(int64_t unit) const { return ((unit + 1) * grid - 1) / units; }
};

// Where tile `tile` lies: tiles run in groups of kRaster m-blocks, n-blocks
// outer, so that the tiles in flight at once share a few activation row
// blocks and many weight blocks in L2.
struct WgmmaTile {
  int m0;  // first activation row
  int nb;  // n-block: weight rows nb x kRowsN .. (kWgmmaRowsN, or gemm_wgmma_ws's 256)
};

template <int kTokens, int kRowsN = kWgmmaRowsN>
__device__ __forceinline__ WgmmaTile wgmma_tile(int64_t tile, int m, int n) {
  constexpr int kRaster = 4;
  const int blocks_n = (n + kRowsN - 1) / kRowsN;
  const int blocks_m = (m + kTokens - 1) / kTokens;
  const int64_t per_group = int64_t(kRaster) * blocks_n;
  const int first_m = int(tile / per_group) * kRaster;
  const int group_m = std::min(kRaster, blocks_m - first_m);
  const int64_t local = tile % per_group;
  return {(first_m + int(local % group_m)) * kTokens, int(local / group_m)};
}

// One 64-k step of a block's 256 MMA threads: dequantizes this thread's 4
// weight words of the step at `step` (shared memory: the plan's A, weights,
// scale/zero pairs) into `frag`, w = (q - 8) * scale + zero rounded to T,
// and issues the warpgroup's 4 m64n{kTokens}k16 wgmmas as one group, reading
// the activations through `desc` (the step's A tile). The caller waits.
template <typename T, typename Plan, int kAcc>
__device__ __forceinline__ void wgmma_step(const uint8_t* step, uint64_t desc, float (&acc)[kAcc],
                                           uint32_t (&frag)[4][4], int tid) {
  using T2 = typename Pair<T>::type;
  constexpr int kGroupSize = Plan::kGroupSize;
  const int warp = tid >> 5, g = (tid & 31) >> 2;
  const uint4 w = reinterpret_cast<const uint4*>(step + Plan::kABytes)[tid];
  const T2* const sz_step = reinterpret_cast<const T2*>(step + Plan::kABytes + Plan::kWBytes);
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    // Scale and zero of rows g and g + 8 of this warp's tile, as pairs.
    const int sub = kGroupSize >= 64 ? 0 : q * 16 / kGroupSize;
    const T2 lo = sz_step[sub * Plan::kRowsN + warp * 16 + g];
    const T2 hi = sz_step[sub * Plan::kRowsN + warp * 16 + g + 8];
    dequant_word<T>(word_of(w, q), frag[q]);
    scale_fragment(frag[q], lo, hi);
#pragma unroll
    for (int r = 0; r < 4; ++r) fence_operand(frag[q][r]);
  }
  wgmma_fence();
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    Wgmma<T, Plan::kTokens>::mma(acc, frag[q], descriptor_at(desc, q * 32));
  }
  wgmma_commit();
}

// Accumulator i of a thread: weight row (tile row) g + 8 ((i / 2) % 2) of
// its warp's tile, token 8 (i / 4) + 2 t + i % 2 (wgmma's D fragment).
__device__ __forceinline__ int wgmma_acc_row(int tid, int i) {
  const int warp = tid >> 5, g = (tid & 31) >> 2;
  return (warp & 3) * 16 + g + (warp >> 2) * 64 + ((i >> 1) & 1) * 8;
}
__device__ __forceinline__ int wgmma_acc_token(int tid, int i) { return (i >> 2) * 8 + 2 * (tid & 3) + (i & 1); }

// A stream-K tile split over blocks (steps [s_begin, s_end) of it here):
// each adds up in the last of them to arrive. Every block stores its partial
// accumulators (slot 0: its first segment, slot 1: its last), then counts
// itself in; the last one adds the parts up in block order into its
// registers and returns true (it writes C). The order is the same whichever
// block arrives last, so C does not depend on the timing (v23): the
// finisher starts from the first block's part (its own where it is that
// block, else read back) and adds the others' in order, its own read back
// where it is not the first. `sync` is a barrier over the 256 MMA
// threads; `finisher` a shared flag. The finisher reads kBatch parts at
// once, every load of a batch issued before its first add (one L2 round
// trip a batch instead of one a part), at kBatch x kAcc registers more a
// thread.
template <int kAcc, int kBatch = 1, typename Sync>
__device__ __forceinline__ bool wgmma_fixup(float (&acc)[kAcc], const WgmmaWork& work, int64_t tile,
                                            int* arrivals, float4* partials, int tid, bool& finisher,
                                            Sync&& sync) {
  constexpr int kThreads = 256;
  const int64_t tile_begin = work.tile_begin(tile);
  auto slot_of = [&](int64_t block) {  // the slot where `block` keeps its part of this tile
    return partials +
           ((block * 2 + (work.units * block / work.grid >= tile_begin ? 0 : 1)) * (kAcc / 4)) * kThreads + tid;
  };
  float4* const mine = slot_of(blockIdx.x);
#pragma unroll
  for (int i = 0; i < kAcc / 4; ++i) {
    mine[i * kThreads] = make_float4(acc[4 * i], acc[4 * i + 1], acc[4 * i + 2], acc[4 * i + 3]);
  }
  __threadfence();
  sync();
  const int64_t first = work.owner(tile_begin), last = work.owner(tile_begin + work.steps - 1);
  if (tid == 0) finisher = atomicAdd(arrivals + tile, 1) == int(last - first);
  sync();
  if (!finisher) return false;
  __threadfence();
  if (blockIdx.x != first) {
    const float4* const theirs = slot_of(first);
#pragma unroll
    for (int i = 0; i < kAcc / 4; ++i) {
      const float4 v = __ldcg(theirs + i * kThreads);
      acc[4 * i] = v.x, acc[4 * i + 1] = v.y, acc[4 * i + 2] = v.z, acc[4 * i + 3] = v.w;
    }
  }
  if constexpr (kBatch == 1) {
    // One part at a time: v15's loop, which gemm_wgmma keeps (the batched
    // form's indexing cost its 64-row kernel 76 bytes of spills, v20).
    for (int64_t block = first + 1; block <= last; ++block) {
      const float4* const theirs = slot_of(block);
#pragma unroll
      for (int i = 0; i < kAcc / 4; ++i) {
        const float4 v = __ldcg(theirs + i * kThreads);
        acc[4 * i] += v.x, acc[4 * i + 1] += v.y, acc[4 * i + 2] += v.z, acc[4 * i + 3] += v.w;
      }
    }
  } else {
    // The parts after the first, p = 0 .. parts - 1 (block first + 1 + p),
    // kBatch at a time. A partial last batch reads the last part again and
    // adds nothing: the adds are selects, since with branches ptxas sinks a
    // batch's later loads under them.
    const int parts = int(last - first);
    for (int p0 = 0; p0 < parts; p0 += kBatch) {
      float4 v[kBatch][kAcc / 4];
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {
        const float4* const theirs = slot_of(first + 1 + std::min(p0 + b, parts - 1));
#pragma unroll
        for (int i = 0; i < kAcc / 4; ++i) v[b][i] = __ldcg(theirs + i * kThreads);
      }
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {
        const bool real = p0 + b < parts;
#pragma unroll
        for (int i = 0; i < kAcc / 4; ++i) {
          acc[4 * i] += real ? v[b][i].x : 0.0f, acc[4 * i + 1] += real ? v[b][i].y : 0.0f;
          acc[4 * i + 2] += real ? v[b][i].z : 0.0f, acc[4 * i + 3] += real ? v[b][i].w : 0.0f;
        }
      }
    }
  }
  return true;
}

// Writes a tile's accumulators to C through shared memory (`staged`,
// kOutTokens rows of Plan::kOutStride elements: the whole tile, or it in
// parts of kOutTokens tokens), then 16-byte stores along N. `sync` is a
// barrier over the 256 MMA threads; the caller syncs before `staged` is
// reused for anything else.
template <typename T, typename Plan, int kOutTokens, int kAcc, typename Sync>
__device__ __forceinline__ void wgmma_store_c(const float (&acc)[kAcc], T* staged, T* c, int64_t ldc, int m0,
                                              int row0, int m, int n, bool vector_c, int tid, Sync&& sync) {
  constexpr int kThreads = 256;
  constexpr int kChunks = Plan::kRowsN / 8;  // 16-byte chunks of C per token row
  constexpr int kPartAcc = kAcc * kOutTokens / Plan::kTokens;
#pragma unroll
  for (int part = 0; part < Plan::kTokens / kOutTokens; ++part) {
    sync();  // `staged` is free
#pragma unroll
    for (int i = part * kPartAcc; i < (part + 1) * kPartAcc; ++i) {
      staged[(wgmma_acc_token(tid, i) - part * kOutTokens) * Plan::kOutStride + wgmma_acc_row(tid, i)] =
          from_float<T>(acc[i]);
    }
    sync();
    for (int idx = tid; idx < kOutTokens * kChunks; idx += kThreads) {
      const int token = part * kOutTokens + idx / kChunks, chunk = idx % kChunks;
      const int row = row0 + chunk * 8;
      if (m0 + token >= m || row >= n) continue;
      store_8(c + int64_t(m0 + token) * ldc + row, staged + (idx / kChunks) * Plan::kOutStride + chunk * 8, n - row,
              vector_c);
    }
  }
}

// The cluster barrier's two halves for threads that publish no memory to
// the cluster: arrive without release semantics, then wait. cg's
// cluster.sync() arrives with release, which the hardware does with a
// GPU-wide memory barrier that waits for the thread's outstanding global
// stores (v14 profile: 4-5% of the samples of a 16-row cluster grid, at the
// barrier after the C stores).
__device__ __forceinline__ void cluster_arrive_relaxed() {
#if defined(INT4MM_WGMMA)
  asm volatile("barrier.cluster.arrive.relaxed;" ::: "memory");
#endif
}
__device__ __forceinline__ void cluster_wait() {
#if defined(INT4MM_WGMMA)
  asm volatile("barrier.cluster.wait;" ::: "memory");
#endif
}

// A tile split over the blocks of a cluster (their K ranges, v10): each
// leaves its part in its shared memory at `part` (float32 [token][row],
// Plan::kPartStride apart; the caller has synced its MMA threads so that
// the memory is free), then adds up its share of the tile's tokens over every
// block's part (the cluster's distributed shared memory), in rank order (the
// same sums whichever block adds them), and writes those rows of C. Two
// cluster barriers, which every thread of the block that has not exited must
// reach (the 256 MMA threads run this; other warps arrive and wait twice).
template <typename T, typename Plan, int kAcc>
__device__ __forceinline__ void wgmma_cluster_store(const float (&acc)[kAcc], float* part, T* c, int64_t ldc,
                                                    int m0, int row0, int m, int n, bool vector_c, int tid) {
  namespace cg = cooperative_groups;
  constexpr int kThreads = 256;
  constexpr int kChunks = Plan::kRowsN / 8;  // 16-byte chunks of C per token row
  const cg::cluster_group cluster = cg::this_cluster();
#pragma unroll
  for (int i = 0; i < kAcc; ++i) part[wgmma_acc_token(tid, i) * Plan::kPartStride + wgmma_acc_row(tid, i)] = acc[i];
  cluster.sync();  // every block's part is written and visible
  const int ranks = int(cluster.num_blocks()), rank = int(cluster.block_rank());
  constexpr int kTokens = Plan::kTokens;
  const int valid = std::min(kTokens, m - m0);
  const int first = rank * valid / ranks, count = (rank + 1) * valid / ranks - first;
  for (int idx = tid; idx < count * kChunks; idx += kThreads) {
    const int token = first + idx / kChunks, chunk = idx % kChunks;
    const int row = row0 + chunk * 8;
    if (row >= n) continue;
    float* const mine = part + token * Plan::kPartStride + chunk * 8;
    float sum[8] = {};
    for (int q = 0; q < ranks; ++q) {
      const float4* const theirs = reinterpret_cast<const float4*>(cluster.map_shared_rank(mine, q));
      const float4 lo = theirs[0], hi = theirs[1];
      sum[0] += lo.x, sum[1] += lo.y, sum[2] += lo.z, sum[3] += lo.w;
      sum[4] += hi.x, sum[5] += hi.y, sum[6] += hi.z, sum[7] += hi.w;
    }
    alignas(16) T out[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) out[e] = from_float<T>(sum[e]);
    store_8(c + int64_t(m0 + token) * ldc + row, out, n - row, vector_c);
  }
  // No block leaves while another reads its shared memory. The reads are
  // done: their sums were stored above. Nothing to publish, so no release.
  cluster_arrive_relaxed();
  cluster_wait();
}

template <typename T,      // half or __nv_bfloat16
          int kGroupSize,  // 32..256
          int kTokens,     // activation rows per block (wgmma N)
          int kStages,     // shared stages of kSub x 64 k
          int kSub>        // 64-k steps per stage
__global__ void __launch_bounds__(256, wgmma_min_blocks(kTokens))
    gemm_wgmma_kernel(const T* __restrict__ a,          // [m, k], row stride lda
                      int64_t lda,
                      const uint4* __restrict__ packed,  // layout.h
                      const T* __restrict__ sz,          // [k / kGroupSize, n, 2]
                      T* __restrict__ c,                 // [m, n], row stride ldc
                      int64_t ldc,
                      int* __restrict__ arrivals,        // [tiles], zeroed (split tiles only, no clusters)
                      float4* __restrict__ partials,     // [grid][2][kTokens / 8][256] (likewise)
                      int m, int n, int k, int64_t dp_tiles, bool vector_c,
                      bool cluster_split) {              // the blocks of a split tile are a cluster
#if defined(INT4MM_WGMMA)
  using Plan = WgmmaPlan<kTokens, kStages, kGroupSize, kSub>;
  constexpr int kThreads = Plan::kThreads;
  constexpr int kStageBytes = Plan::kStageBytes;
  constexpr int kStepBytes = Plan::kStepBytes;
  constexpr int kRing = kStages * kSub;  // steps in shared memory
  constexpr int kACopies = (kTokens * 8 + kThreads - 1) / kThreads;  // 16-byte A copies per thread per step
  constexpr int kAcc = kTokens / 2;                 // float32 accumulators per thread

  extern __shared__ uint8_t smem_raw[];
  const uint32_t smem_raw_address = uint32_t(__cvta_generic_to_shared(smem_raw));
  const uint32_t smem = (smem_raw_address + 1023) & ~1023u;
  uint8_t* const smem_ptr = smem_raw + (smem - smem_raw_address);
  const uint64_t a_desc = sw128_descriptor(smem);  // stage 0's activation tile

  const int tid = threadIdx.x;
  const int lane = tid & 31;
  const int warp = tid >> 5;  // = the block's weight tile; warp % 4 = its rows in the warpgroup
  const int steps = (k + 63) / 64;
  const int groups = k / kGroupSize;
  const int weight_tiles = (n + 15) / 16;
  const int64_t tiles = int64_t((n + Plan::kRowsN - 1) / Plan::kRowsN) * ((m + kTokens - 1) / kTokens);
  WgmmaWork work(tiles, steps, dp_tiles);
  // Launched with PDL: nothing global is read or written before the kernel
  // ahead of this one in the stream has finished (a no-op otherwise).
  grid_dependency_wait();
  int64_t pair;
  int s_begin, s_end;
  while (work.next(pair, s_begin, s_end)) {
    // One segment: steps [s_begin, s_end) of tile `pair`.
    const WgmmaTile tile = wgmma_tile<kTokens>(pair, m, n);
    const int m0 = tile.m0, nb = tile.nb;
    const int row0 = nb * Plan::kRowsN;

    // This thread's copies, set up once per segment (zero-filled where the
    // row, tile or group does not exist: those weights come out as 0).
    // fetch() is called for the segment's steps in order, so the sources
    // advance by one step per call instead of being recomputed. Copy i of A:
    // row tid / 8 + 32 i, 16-byte chunk tid % 8 of the step's 128-byte row.
    const int len = s_end - s_begin;
    const int a_chunk = tid & 7;
    const T* a_src[kACopies];
    bool a_ok[kACopies];
#pragma unroll
    for (int i = 0; i < kACopies; ++i) {
      const int row = (tid >> 3) + i * (kThreads / 8);
      a_ok[i] = m0 + row < m;
      a_src[i] = a + int64_t(a_ok[i] ? m0 + row : 0) * lda + int64_t(s_begin) * 64 + a_chunk * 8;
    }
    // Rows 32 apart share their swizzle phase (row % 8).
    const uint32_t a_dst = smem + uint32_t((tid >> 3) * 128 + ((a_chunk ^ ((tid >> 3) & 7)) << 4));
    int a_k = s_begin * 64 + a_chunk * 8;  // this thread's first k of the next fetch
    const bool w_ok = nb * 8 + warp < weight_tiles;
    const uint4* w_src = packed + (int64_t(w_ok ? nb * 8 + warp : 0) * steps + s_begin) * 32 + lane;
    const uint32_t w_dst = smem + uint32_t(Plan::kABytes + tid * 16);
    // Scale/zero pairs: the last 128 x kSzGroups threads (those without A
    // copies at 16 activation rows), thread sz_tid copying row sz_tid % 128
    // of group sz_group, the step's (group 32: its first or second group).
    constexpr int kStepsPerGroup = kGroupSize >= 64 ? kGroupSize / 64 : 1;
    const int sz_tid = tid - (kThreads - Plan::kSzGroups * Plan::kRowsN);
    const bool sz_copier = sz_tid >= 0;
    const int sz_row = row0 + (sz_tid & (Plan::kRowsN - 1));
    const bool sz_row_ok = sz_row < n;
    int sz_group = kGroupSize >= 64 ? s_begin / kStepsPerGroup : s_begin * Plan::kSzGroups + sz_tid / Plan::kRowsN;
    const T* sz_src = sz + (int64_t(sz_group) * n + (sz_row_ok ? sz_row : 0)) * 2;
    const uint32_t sz_dst = smem + uint32_t(Plan::kABytes + Plan::kWBytes + sz_tid * 4);

    // Stage `index` of the segment (its steps kSub index ..) into ring slot
    // `slot` (a constant wherever the step loop below is unrolled: the shared
    // addresses are register + immediate); one commit group per stage.
    auto fetch = [&](int index, int slot) {
#pragma unroll
      for (int sub = 0; sub < kSub; ++sub) {
        const int i = index * kSub + sub;
        if (i >= len) break;
        const uint32_t offset = uint32_t(slot * kStageBytes + sub * kStepBytes);
        // Group 32 with K % 64 == 32: the last step's second half is zero.
        const bool k_ok = kGroupSize >= 64 || a_k < k;
#pragma unroll
        for (int c = 0; c < kACopies; ++c) {
          if ((kTokens * 8) % kThreads == 0 || tid + c * kThreads < kTokens * 8) {
            cp_async_16(a_dst + offset + c * (kThreads / 8) * 128, a_src[c], a_ok[c] && k_ok);
          }
          a_src[c] += 64;
        }
        a_k += 64;
        cp_async_16(w_dst + offset, w_src, w_ok);
        w_src += 32;
        if (sz_copier) {
          // Group 32 with K % 64 == 32: the last step's second group does not exist.
          const bool ok = sz_row_ok && (kGroupSize >= 64 || sz_group < groups);
          cp_async_4(sz_dst + offset, ok ? sz_src : sz, ok);
          if ((s_begin + i + 1) % kStepsPerGroup == 0) {  // the next step starts a group (or two)
            sz_group += Plan::kSzGroups;
            sz_src += int64_t(Plan::kSzGroups) * n * 2;
          }
        }
      }
      cp_async_commit();
    };

    float acc[kAcc];
#pragma unroll
    for (int i = 0; i < kAcc; ++i) acc[i] = 0.0f;

    // Step i, the ring's step j (i % kRing): at a stage's first step, wait
    // for the stage and refill the one two stages back (stage i / kSub - 2)
    // with stage i / kSub + kStages - 2; then dequantize the step's 4
    // fragments into `frag` (free: the wgmmas that read it two steps ago are
    // done), and 4 wgmmas as one group; wait for all but this group.
    auto run_step = [&](int i, int j, uint32_t (&frag)[4][4]) {
      const int slot = j / kSub;
      if (j % kSub == 0) {
        cp_async_wait<kStages - 3>();
        fence_proxy_async_shared();
        __syncthreads();  // this stage is complete; the wgmmas of the stage two back are done
        fetch(i / kSub + kStages - 2, (slot + kStages - 2) % kStages);
      }
      const uint32_t offset = uint32_t(slot * kStageBytes + (j % kSub) * kStepBytes);
      wgmma_step<T, Plan>(smem_ptr + offset, descriptor_at(a_desc, offset), acc, frag, tid);
      wgmma_wait<1>();
    };

#pragma unroll
    for (int s = 0; s < kStages - 2; ++s) fetch(s, s);
    // One ring of kRing steps per round, unrolled: shared offsets,
    // descriptors and the register buffer (two, alternating) are constants.
    // The tail breaks out of the ring rather than skipping steps: with the
    // wgmmas under conditions, ptxas serializes them (C7511).
    uint32_t frag[2][4][4];
    int i0 = 0;
    for (; i0 + kRing <= len; i0 += kRing) {
#pragma unroll
      for (int j = 0; j < kRing; ++j) run_step(i0 + j, j, frag[j & 1]);
    }
#pragma unroll
    for (int j = 0; j < kRing - 1; ++j) {
      if (i0 + j >= len) break;
      run_step(i0 + j, j, frag[j & 1]);
    }
    wgmma_wait<0>();
#pragma unroll
    for (int i = 0; i < kAcc; ++i) fence_operand(acc[i]);
    cp_async_wait<0>();
    // The next kernel's blocks may take free block slots from here (they
    // wait for this grid to finish): its launch overlaps this epilogue.
    grid_dependents_launch();

    if (cluster_split) {
      __syncthreads();  // every warp's last reads of the stages are done
      wgmma_cluster_store<T, Plan>(acc, reinterpret_cast<float*>(smem_ptr), c, ldc, m0, row0, m, n, vector_c, tid);
      continue;  // (the block's only segment)
    }

    // A tile split over blocks: each adds up in the last of them to arrive.
    auto sync = [] { __syncthreads(); };
    if (s_end - s_begin < steps) {
      __shared__ bool finisher;
      // (Not the finisher: the stages are free, the barrier in wgmma_fixup
      // followed the last read.)
      if (!wgmma_fixup(acc, work, pair, arrivals, partials, tid, finisher, sync)) continue;
    }
    // C through shared memory (the stages are free once every warp is here).
    wgmma_store_c<T, Plan, kTokens>(acc, reinterpret_cast<T*>(smem_ptr), c, ldc, m0, row0, m, n, vector_c, tid, sync);
    __syncthreads();  // the next segment refills the stages
  }
#endif  // INT4MM_WGMMA
}

// The persistent grid of `tiles` tiles of `steps` units on `slots` block
// slots (plan_gemm_wgmma's comment): whole waves of tiles data-parallel, the
// last partial wave stream-K, every block at least 2 units; with fewer tiles
// than slots, a whole number of blocks per tile where that keeps >= 90% of them.
inline WgmmaGrid wgmma_stream_k_grid(int64_t tiles, int64_t steps, int64_t slots) {
  int64_t grid = std::max<int64_t>(1, std::min<int64_t>(slots, tiles * steps / 2));
  const int64_t splits = grid / tiles;
  if (splits >= 2 && 10 * splits * tiles >= 9 * grid) grid = splits * tiles;
  int64_t dp_tiles = tiles / grid * grid;
  if (dp_tiles < tiles && (tiles - dp_tiles) * steps < 2 * grid) {
    dp_tiles = std::max<int64_t>(0, dp_tiles - grid);  // too few stream-K units: one wave fewer
  }
  grid = std::max<int64_t>(1, std::min<int64_t>(grid, (tiles - dp_tiles) * steps / 2 + (dp_tiles > 0 ? grid : 0)));
  return WgmmaGrid{grid, dp_tiles, 1};
}

// The cluster size of a kCluster grid (plan_gemm_wgmma's comment): as few
// blocks per tile as put one on >= 70% of `cover` (SMs, or block slots), at
// least 2, at most 8; 0 where K > 8192, a block would keep fewer than 2
// steps, or the blocks would not fit `slots` at once.
inline int wgmma_cluster_size(int64_t tiles, int64_t steps, int64_t cover, int64_t slots) {
  constexpr int64_t kMaxSteps = 128;  // K <= 8192
  const int64_t size = std::max<int64_t>(2, (7 * cover + 10 * tiles - 1) / (10 * tiles));
  return steps <= kMaxSteps && size <= kWgmmaMaxCluster && size * tiles <= slots && steps >= 2 * size ? int(size) : 0;
}

// Host side: the grid of one gemm_wgmma call (WgmmaSplit, cuda_internal.h).
//
// kCluster, where K <= 8192: each tile split evenly over the blocks of one
// cluster, as few as put a block on >= 70% of the SMs (at least 2, at most
// 8, the portable cluster size), where every block keeps >= 2 steps and all
// the clusters fit the GPU at once. On an H100 (docs/cuda.md, v10, one
// machine, bf16, against the stream-K grid): 4096 x 4096 at M = 16-64
// (clusters of 3) 1.25-1.32x faster, M = 128 1.03x, M = 256 (pairs) 1.19x;
// 8192 x 8192 at M = 16-256 (pairs) 1.03-1.22x. Deeper K keeps stream-K
// (v11 workbench: 14336 x 4096 at M = 16-64 in clusters of 3 1.05-1.09x
// slower, 28672 x 8192 at M = 16 in pairs level); other sizes than the
// rule's ran slower or level on every shape (v11, without PDL).
//
// PDL (v11) for one wave without a workspace where the next call's blocks
// cannot double up on SMs that this call leaves one block each: more blocks
// than SMs, or one block fills an SM; a grid of at most one block per SM of
// a kernel that fits two is padded to fill an SM (and launches without PDL
// where its clusters would not fit then). Unpadded, such grids ran up to
// 1.3x slower with PDL (the next call's blocks started two to an SM on the
// SMs left free); padded, 1.04-1.05x faster (4096 x 4096 at M = 32-128).
//
// Otherwise (kStreamK, or no cluster fits) a persistent grid of as many
// blocks as fit at once: whole waves of tiles data-parallel, the last partial
// wave stream-K, every block at least 2 units; with fewer tiles than blocks,
// a whole number of blocks per tile where that keeps >= 90% of them (v8),
// each block one segment (one pipeline fill, no tile boundary inside its run).
template <typename T, int kGroupSize, int kTokens, int kStages, int kSub>
WgmmaGrid plan_gemm_wgmma(int m, int n, int k, WgmmaSplit split) {
  using Plan = WgmmaPlan<kTokens, kStages, kGroupSize, kSub>;
  auto kernel = gemm_wgmma_kernel<T, kGroupSize, kTokens, kStages, kSub>;
  const int64_t tiles = (int64_t(n) + Plan::kRowsN - 1) / Plan::kRowsN * ((int64_t(m) + kTokens - 1) / kTokens);
  const int64_t steps = (int64_t(k) + 63) / 64;
  if (tiles * steps == 0) return WgmmaGrid{0, 0, 1};
  static std::atomic<int> occupancy[kMaxCachedDevices] = {};
  const int blocks_per_sm = resident_blocks_per_sm(occupancy, kernel, Plan::kThreads, Plan::kSmemBytes);
  const int64_t sms = sm_count();
  const int64_t slots = sms * blocks_per_sm;

  static std::atomic<int> padded[kMaxCachedDevices] = {};
  static std::atomic<int> lone_clusters[kWgmmaMaxCluster + 1][kMaxCachedDevices] = {};
  auto with_pdl = [&](WgmmaGrid grid) {
    if (grid.blocks > slots) return grid;
    grid.pdl = true;
    if (blocks_per_sm > 1 && grid.blocks <= sms) {
      const int smem = lone_block_smem(padded, kernel, Plan::kSmemBytes);
      grid.alone = grid.cluster == 1 ||
                   resident_clusters(lone_clusters[grid.cluster], kernel, Plan::kThreads, smem, grid.cluster) >=
                       grid.blocks / grid.cluster;
      grid.pdl = grid.alone;
    }
    return grid;
  };
  if (split == WgmmaSplit::kNone) return with_pdl(WgmmaGrid{tiles, tiles, 1});
  const int size = wgmma_cluster_size(tiles, steps, sms, slots);
  if (split == WgmmaSplit::kCluster && size > 0) {
    static std::atomic<int> clusters[kWgmmaMaxCluster + 1][kMaxCachedDevices] = {};
    if (resident_clusters(clusters[size], kernel, Plan::kThreads, Plan::kSmemBytes, size) >= tiles) {
      return with_pdl(WgmmaGrid{size * tiles, 0, size});
    }
  }
  return wgmma_stream_k_grid(tiles, steps, slots);
}

// The workspace of a stream-K launch of `grid` blocks over `tiles` tiles:
// the arrival counters (padded to 256 bytes), then two partial-C slots per block.
inline size_t wgmma_counter_bytes(int64_t tiles) { return (size_t(tiles) * sizeof(int) + 255) / 256 * 256; }
template <int kTokens>
size_t wgmma_workspace_bytes(int64_t grid, int64_t tiles) {
  return wgmma_counter_bytes(tiles) + size_t(grid) * 2 * (kTokens / 8) * 256 * sizeof(float4);
}

// Zeroes `count` arrival counters of a stream-K launch on `stream` (gemm.cu):
// with a kernel that lets the launch after it start at once, which then
// waits for it (programmatic dependent launch) before it reads them, where
// zeroed_by_kernel(); else with cudaMemsetAsync, which holds that launch
// back until the counters are zero (INT4MM_ZERO_KERNEL=0).
void zero_arrivals(int* arrivals, int64_t count, cudaStream_t stream);
bool zeroed_by_kernel();

// Runs launch(arrivals, partials): with the stream-K workspace of `grid`
// where `split` (its counters zeroed first, zero_arrivals), from the caller
// (workspace_bytes at least wgmma_workspace_bytes) or, when it passes none,
// from the stream's memory pool; else with null pointers.
template <int kTokens, typename Launch>
void with_wgmma_workspace(const WgmmaGrid& grid, int64_t tiles, bool split, void* workspace, size_t workspace_bytes,
                          cudaStream_t stream, Launch&& launch) {
  if (!split) {
    launch(nullptr, nullptr);
    return;
  }
  auto run = [&](void* space) {
    int* const arrivals = static_cast<int*>(space);
    zero_arrivals(arrivals, tiles, stream);
    launch(arrivals, reinterpret_cast<float4*>(static_cast<uint8_t*>(space) + wgmma_counter_bytes(tiles)));
  };
  if (workspace != nullptr && workspace_bytes >= wgmma_workspace_bytes<kTokens>(grid.blocks, tiles)) {
    run(workspace);
  } else {
    with_stream_memory(wgmma_workspace_bytes<kTokens>(grid.blocks, tiles), stream, run);
  }
}

// Host side: one gemm_wgmma call on `grid` (plan_gemm_wgmma's, or for the
// workbench any grid of the same kinds: one block per tile; whole waves and
// a stream-K wave; `cluster` blocks per tile, grid.blocks = cluster x tiles).
// The workspace (split tiles without clusters) comes from the caller
// (workspace_bytes at least wgmma_workspace_bytes) or, when it passes none,
// from the stream's memory pool.
template <typename T, int kGroupSize, int kTokens, int kStages, int kSub>
void launch_gemm_wgmma(const T* a, int64_t lda, const void* packed, const T* sz, T* c, int64_t ldc, int m, int n,
                       int k, const WgmmaGrid& grid, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  using Plan = WgmmaPlan<kTokens, kStages, kGroupSize, kSub>;
  auto kernel = gemm_wgmma_kernel<T, kGroupSize, kTokens, kStages, kSub>;
  if (grid.blocks == 0) return;
  static std::atomic<int> occupancy[kMaxCachedDevices] = {};
  static std::atomic<int> pdl_cache[kMaxCachedDevices] = {};
  static std::atomic<int> padded[kMaxCachedDevices] = {};
  resident_blocks_per_sm(occupancy, kernel, Plan::kThreads, Plan::kSmemBytes);  // allows its shared memory
  const int64_t tiles = (int64_t(n) + Plan::kRowsN - 1) / Plan::kRowsN * ((int64_t(m) + kTokens - 1) / kTokens);
  const bool vector_c = ldc % 8 == 0 && reinterpret_cast<uintptr_t>(c) % 16 == 0;
  const bool no_workspace = grid.dp_tiles == tiles || grid.cluster > 1;
  // With a workspace, where its counters are zeroed by a kernel that lets
  // this launch start (zero_arrivals): after the call before has finished,
  // so that no SM holds its blocks any more.
  const bool pdl = (no_workspace ? grid.pdl : zeroed_by_kernel()) && pdl_allowed(pdl_cache, kernel);
  const int smem = grid.alone ? lone_block_smem(padded, kernel, Plan::kSmemBytes) : Plan::kSmemBytes;
  with_wgmma_workspace<kTokens>(grid, tiles, !no_workspace, workspace, workspace_bytes, stream,
                                [&](int* arrivals, float4* partials) {
                                  launch_kernel(kernel, unsigned(grid.blocks), Plan::kThreads, smem, stream, pdl,
                                                unsigned(grid.cluster), "gemm_wgmma_kernel", a, lda,
                                                static_cast<const uint4*>(packed), sz, c, ldc, arrivals, partials, m,
                                                n, k, grid.dp_tiles, vector_c, grid.cluster > 1);
                                });
}

}  // namespace int4mm::detail::cuda
