// The CUDA backend's entry points and its dispatch: which kernel runs for
// which (dtype, M, alignment, GPU). The one table:
//
//   dtype        M         kernel                               why
//   fp16/bf16    1..8      gemv_mma<kMTiles = 1>, tiles per     memory-bound; tensor cores do
//                          block, steps per chunk, warps,       the math, weights read once;
//                          staged A and scaled weights by M,    each activation fragment feeds
//                          N, group and alignment (gemv_shape)  kTiles tiles
//                          (group 32 at M <= 4: two chunks a
//                          warp where the tiles fit one wave;
//                          INT4MM_GEMV_X2=0: off)
//                9..16     gemv_mma<2, kTiles = 4 | 2>, 16      gemv_mma re-reads A per block:
//                          warps (8 beyond one wave), scaled    at 16 rows that traffic shows
//                          weights (bf16 2-tile: folded), A
//                          staged where it can be;
//                          without staged A (group 64, or A's
//                          rows not 16-byte aligned) or without
//                          gemm_wgmma, where
//                          N K >= 2^27, or >= 2^25 and N >= 3 K
//                          (gemm_wgmma) or K >= 1.5 N, or
//                          >= 2^26 with K <= 8192 (gemm_wgmma):
//                          as 17.. below
//                17..      compute capability 9.0:              wgmma (sm_90a): the weights
//                          gemm_wgmma, 16..256 rows per         dequantized in registers as A,
//                          block; whole waves of tiles, last    the activations read by the
//                          wave stream-K (or one block per      tensor cores from shared memory
//                          tile, or clusters: rules in
//                          gemm.cu); gemm_wgmma_ws (copies
//                          by TMA in a warpgroup of their
//                          own) from 64 rows
//                17..128   other GPUs: gemm_mma (group >= 64;   one shared activation tile feeds
//                          group 32: gemv_mma up to M = 32)     8 warps; stream-K over the SMs
//                129..     other GPUs: dequantize + cuBLAS
//   float32      1..4      gemv_simt<kM = 1, 2, 4>              full fp32 FMAs on CUDA cores
//   float32      5..       dequantize + cuBLAS SGEMM (no TF32)
//
// The thresholds are the H100 measurements of docs/cuda.md (v4-v15; bench/tune_mma.cu).
// Any kernel whose alignment needs (see supports()) are not met falls back to
// dequantize + cuBLAS, which accepts every valid input.
#include <atomic>

#include "cuda/common.cuh"
#include "cuda/cuda_internal.h"
#include "cuda/gemv_mma.cuh"
#include "cuda/gemv_simt.cuh"
#include "cuda/layout.h"

namespace int4mm::detail::cuda {

void dequant_gemm_mm(const MmArgs& args);  // dequant_gemm.cu
void gemm_mma_mm(const MmArgs& args);      // gemm.cu
void gemm_wgmma_mm(const MmArgs& args);    // gemm.cu

namespace {

// gemv_mma's launch configuration, chosen with bench/tune_mma.cu on an H100
// (docs/cuda.md, "v2"): 8 warps split K, 4 x 16-byte loads per lane per tile,
// no register double buffer (it cost more occupancy than it hid latency), and
// register caps that keep 3 blocks (1 tile) or 2 blocks (2 tiles) per SM.
constexpr int kGemvWarps = 8;
constexpr int kGemvWarps12 = 12;  // M <= 4, group 128, at most 2 blocks per SM (gemv_shape)
constexpr int kGemvSteps = 4;  // gemv_simt's; gemv_mma's per call (gemv_shape)
constexpr int64_t kMmaMaxM = 32;
constexpr int64_t kSimtMaxM = 4;
constexpr int64_t kGemvLastM = 8;    // gemv_mma up to this M everywhere ...
constexpr int64_t kGemmLastM = 128;  // ... gemm_mma from M = 17 (9 on large weights) to this one

bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

int tiles(const MmArgs& args) { return int(cuda_layout::padded_n(args.n) / 16); }

}  // namespace

// Multiprocessor count of the current device, asked of the driver once per
// device: dispatch runs on every call, and the attribute query is not free.
int sm_count() {
  static std::atomic<int> cache[kMaxCachedDevices] = {};
  return cached_per_device(cache, [](int device) {
    int sms = 0;
    INT4MM_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    return sms;
  });
}

namespace {

// gemv_mma's shape per call: 16-row tiles per block (each activation
// fragment feeds that many mmas, and each block reads A once), 64-k steps
// per chunk (each warp's loads in flight; smaller chunks leave registers for
// more blocks per SM), warps, A direct or staged through shared memory, and
// weights scaled in registers or folded per group. Chosen with
// bench/tune_mma.cu on an H100 (docs/cuda.md, v2, v4, v6, v7, v8, v9):
// "wide" is N/16 >= 3 x SMs; "staged" needs group 128 and rows of A 16-byte
// aligned. Scaled weights pay one packed FMA per weight register and save
// the fold's per-group work per m-tile, so they win where groups are small
// or m-tiles many (v9).
//   M 1..8    group <= 64: scaled; group 64: 4 tiles and 2 steps where
//             N/16 >= 4 x SMs (8192 x 28672 at M = 8 53.9 us against 59.7),
//             but at M <= 4 2 tiles of 2 steps where the 4-tile blocks
//             would take more than one wave, N/16 > 8 x SMs (8192 x 28672 at
//             M = 1 / 2 / 4 49.2 / 49.0 / 49.6 us against 51.9 / 51.1 /
//             51.7; 4096 x 14336, one wave, keeps 4 tiles: 14.2 against
//             14.9, v12); else 2 tiles where wide, else 1, with 2 steps for
//             group 32 and 4 for 64 (8192 x 28672 at M = 1: group 32 62.3 us
//             against 67.1, group 64 52.1 against 54.8, v9). Group 64
//             folded (v29): at M <= 4 in 4 tiles where N/16 > 8 x SMs, at
//             M <= 2 where those rules give 4 steps; one chunk a warp in
//             12-warp blocks (v30)
//   M 2..8    group 128 with A staged, where 2-tile blocks fit one wave of
//             one per SM, at M = 5..8, and at M <= 4 where 1-tile blocks
//             would outnumber the SMs (M = 2: and K > N): 16 warps, 2
//             steps, bf16 folded, fp16 scaled (v29); else:
//   M 1..4    group >= 128: 2 tiles where wide, else 1; 2 steps for group
//             128 where K <= N, else 4 (group 256: a chunk holds whole groups);
//             with 2 steps, 1 tile where 2-tile blocks take 1-2 waves. Group
//             128 whose grid has at most 2 blocks per SM: 12-warp blocks (1
//             tile, or 2 of 2 steps; v19)
//   M 5..8    group 128: scaled, 4 tiles and 2 steps where N/16 >= 4 x SMs
//             (4096 x 14336 14.5 us against 15.4, v9); else staged and
//             scaled, 2 tiles and 4 steps (v8, v9); without staged A, 4
//             tiles of 16 warps where wide (v7.3). Group 256: 2 tiles where
//             wide, else 1; 4 steps
//   M 9..16   group 64 / 128: scaled, 16 warps in one block per SM; 2 tiles
//             where those blocks fit one wave, else 4; A staged where it can
//             be (14336 x 4096 at M = 16 18.3 us against 19.2, 8192 x 8192
//             20.6 against 20.9, group 64 on 8192 x 8192 22.0 against 25.4,
//             v9); where 4-tile blocks of 16 warps would take more than a
//             wave with A staged, 8 warps two per SM (v27); bf16 in
//             2-tile blocks with A staged: folded (v28), of 8 warps two
//             per SM where 16-warp ones would take more than a wave,
//             those fit one and K <= N (v30). Group 32:
//             folded, 2 tiles, 2 steps (scaled 1.17-1.23x slower, v9).
//             Group 256: folded, 4 tiles where wide, else 2; 4 steps
//   M 17..32  (group 32 on GPUs without gemm_wgmma) 1 tile, 4 steps
bool a_rows_16_byte_aligned(const MmArgs& args) { return args.lda % 8 == 0 && aligned(args.a, 16); }

GemvShape gemv_shape(const MmArgs& args) {
  const int64_t sms = sm_count();
  const int group = int(args.group_size);
  const bool wide = tiles(args) >= 3 * sms;
  const bool staged = group == 128 && a_rows_16_byte_aligned(args);
  constexpr int kWarps16 = 2 * kGemvWarps;
  const bool very_wide = tiles(args) >= 4 * sms;
  if (args.m <= 8 && group <= 64) {
    // Group 64: folded where these rules took scaled 2-tile blocks of 2
    // steps beyond one wave of 4-tile ones, in 4-tile blocks, at M <= 4
    // (v29 A/B: 8192 x 28672 1.04-1.07x both dtypes), and where they took
    // scaled 1- or 2-tile blocks of 4 steps, at M <= 2 (8192 x 8192
    // 1.01-1.04x, 28672 x 8192 1.00-1.02x; at M = 4 fp16 0.99x, bf16
    // 1.00-1.01x). INT4MM_GEMV64_FOLDED=0: off.
    static const bool folded64 = switched_on("INT4MM_GEMV64_FOLDED");
    const bool fold64 = folded64 && group == 64;
    if (group == 64 && very_wide) {
      const bool one_wave = tiles(args) <= 8 * sms;  // 4-tile blocks, 2 per SM
      if (fold64 && !one_wave && args.m <= 4) return {4, 2, kGemvWarps};
      return {args.m > 4 || one_wave ? 4 : 2, 2, kGemvWarps, false, true};
    }
    // Two chunks of 2 steps a warp at M <= 4 (INT4MM_GEMV_X2=0: off). Group
    // 32 with A staged: scaled 2-tile blocks of 8 warps where they fit one
    // wave at 2 per SM, but at M <= 2 where 12-warp ones do (v26.1: 8192 x
    // 8192 and 28672 x 8192 1.01-1.05x at M = 1..4; 4096 x 4096 and 14336
    // x 4096 1.04-1.09x at M = 4, 0.96x on the second at M = 2). Else,
    // groups 32 / 64 where 1-tile blocks of 12 warps fit 2 per SM: folded
    // (group 32 on 4096 x 4096 and 14336 x 4096 1.04-1.14x, v26.0; group 64
    // 1.03-1.09x, v26.1).
    static const bool x2 = switched_on("INT4MM_GEMV_X2");
    if (x2 && args.m <= 4) {
      const bool one_wave_of_12 = tiles(args) <= 2 * sms;
      if (group == 32 && tiles(args) <= 4 * sms && (args.m > 2 || !one_wave_of_12) &&
          a_rows_16_byte_aligned(args)) {
        return {2, 2, kGemvWarps, true, true, 2};
      }
      if (one_wave_of_12) {
        // Group 64: one chunk a warp (v30.1, workbench v29 call 1: 14336 x
        // 4096 at M = 1 / 2 / 4 13.18 / 13.79 / 15.35 us against two
        // chunks' 13.63 / 14.15 / 15.41). INT4MM_GEMV64_X1=0: off.
        static const bool x1_64 = switched_on("INT4MM_GEMV64_X1");
        return {1, 2, kGemvWarps12, false, false, x1_64 && group == 64 ? 1 : 2};
      }
    }
    return {wide ? 2 : 1, group == 32 ? 2 : 4, kGemvWarps, false, !(fold64 && args.m <= 2)};
  }
  // Group 128 with A staged where 2-tile blocks fit one wave of one per
  // SM: the 16-warp 2-step blocks of M = 9..16 with one m-tile, bf16
  // folded, fp16 scaled (v29, A/B against the rules below: 14336 x 4096 at
  // M = 3..8 1.09-1.23x, 4096 x 4096 at M = 4..8 1.07-1.29x, M = 3 level;
  // at M = 2 14336 x 4096 1.04-1.06x but 4096 x 4096 0.98x; folded against
  // scaled bf16 1.01-1.05x, fp16 0.90-0.99x). At M = 5..8 they replace
  // 8-warp 2-tile blocks; at M <= 4 1-tile ones, so only where those take
  // more than one block per SM (M = 2: and K > N). INT4MM_GEMV8_STAGED=0: off.
  static const bool staged8 = switched_on("INT4MM_GEMV8_STAGED");
  const bool one_tile_blocks_share_sms = tiles(args) > sms && (args.m >= 3 || args.k > args.n);
  if (staged8 && staged && args.m >= 2 && args.m <= 8 && (args.m >= 5 || one_tile_blocks_share_sms) &&
      (tiles(args) + 1) / 2 <= sms) {
    return {2, 2, kWarps16, true, args.dtype != DType::kBFloat16};
  }
  if (args.m <= 4) {
    const int steps = group == 128 && args.k <= args.n ? 2 : 4;
    // 2 tiles where wide, but 1 where 2-tile blocks of 2 steps (3 per SM)
    // would run one wave and part of a second: 4096 x 14336 1.02-1.07x
    // (v19: 896 blocks, 2.3 waves, against 448, 1.1 waves).
    const int64_t pairs = (tiles(args) + 1) / 2;  // 2-tile blocks
    const bool second_wave = steps == 2 && pairs > 3 * sms && pairs <= 6 * sms;
    const int t = wide && !second_wave ? 2 : 1;
    // Group 128 where the 8-warp grid leaves a third of its block slots
    // empty (at most 2 blocks per SM): blocks of 12 warps, 2 per SM, keep
    // half again as many loads in flight (v19: 4096 x 4096, 8192 x 8192,
    // 14336 x 4096 1.03-1.15x), but not with 2 tiles of 4 steps (28672 x
    // 8192 0.70-0.87x). INT4MM_GEMV_W12=0: off.
    static const bool w12 = switched_on("INT4MM_GEMV_W12");
    const int64_t blocks = (tiles(args) + t - 1) / t;
    if (group == 128) {
      // v27 (whole chunks changed which shapes win; workbench, M = 1 / 4):
      // 1-tile blocks of 2 steps with 16 warps where 12-warp ones fit (4096
      // x 4096 4.73 / 5.24 us against 5.45 / 5.41, 14336 x 4096 12.04 /
      // 14.16 against 12.78 / 14.49); scaled 4-tile blocks where they fill
      // one wave of 1-2 per SM (4096 x 14336 12.68 / 12.67 against
      // dispatch's 13.36 / 14.37); folded 4-tile blocks beyond 8 tiles per
      // SM (8192 x 28672 43.47 / 43.73 against 44.53 / 45.22).
      const int64_t quads = (tiles(args) + 3) / 4;  // 4-tile blocks
      if (w12 && t == 1 && blocks <= 2 * sms) return {1, 2, kWarps16};
      if (quads > sms && quads <= 2 * sms) return {4, 2, kGemvWarps, false, true};
      if (tiles(args) > 8 * sms) return {4, 2, kGemvWarps};
    }
    const bool warps12 = w12 && group == 128 && blocks <= 2 * sms && t * steps <= 4;
    return {t, steps, warps12 ? kGemvWarps12 : kGemvWarps};
  }
  if (args.m <= 8) {
    if (group == 128 && very_wide) return {4, 2, kGemvWarps, false, true};
    if (staged) return {2, 4, kGemvWarps, true, true};
    if (group == 128 && wide) return {4, 2, kWarps16};
    return {wide ? 2 : 1, 4};
  }
  if (args.m <= 16) {
    if (group == 32) return {2, 2};
    if (group == 256) return {wide ? 4 : 2, 4};
    // 4-tile blocks beyond one wave of one per SM: 8 warps, two per SM, A
    // staged (v25's workbench: 8192 x 28672 55.9 us against 16 warps' 69.1,
    // 4096 x 14336 16.9 against 21.0). Scaled: folded with the
    // accumulators in shared memory ran 0.97-1.00x in bf16, 0.89-0.93x in
    // fp16 (v29, docs/results/v29-acc-shared.patch).
    if (staged && (tiles(args) + 3) / 4 > sms) return {4, 2, kGemvWarps, true, true};
    // bf16 in 2-tile blocks with A staged: folded (v28, the tiles one after
    // another, the weights' bias in the fold: 14336 x 4096 13.56-13.69 us
    // against 14.08-14.23, 4096 x 4096 level; with 4 tiles the folded
    // kernels spill and ran 0.67-0.85x). INT4MM_GEMV16_FOLDED=0: scaled.
    static const bool folded16 = switched_on("INT4MM_GEMV16_FOLDED");
    const int64_t pairs = (tiles(args) + 1) / 2;  // 2-tile blocks
    const bool two = pairs <= sms;
    const bool bf16_staged = folded16 && staged && args.dtype == DType::kBFloat16;
    // bf16 where 2-tile blocks of 16 warps would take more than one wave:
    // 2-tile blocks of 8 warps, two per SM, folded, where they fit one
    // wave and K <= N (v30.0, A/B against the scaled 4-tile blocks at M =
    // 9 / 12 / 16: 4096 x 8192 1.07-1.11x, 8192 x 8192 1.00-1.03x, but
    // 28672 x 8192 0.96-0.98x). INT4MM_GEMV16_W8=0: off.
    static const bool w8 = switched_on("INT4MM_GEMV16_W8");
    if (w8 && bf16_staged && !two && pairs <= 2 * sms && args.k <= args.n) return {2, 2, kGemvWarps, true, false};
    return {two ? 2 : 4, 2, kWarps16, staged, !(bf16_staged && two)};
  }
  return {1, 4};
}

// The gemv_mma shapes that are compiled: every shape gemv_shape picks, and
// the direct, folded 8-warp shapes at any size the registers allow (tests
// and the workbench reach those). gemv_mma's launch table follows this list.
//   folded, direct   8 warps: tiles 1, 2 or 4 (M <= 8), 2 or 4 (M <= 16),
//                    1 (M <= 32); 2 or 4 steps holding whole groups. 16 warps:
//                    4 tiles, 2 steps, group 128, M <= 8; 1 tile, 2 steps,
//                    group 128, M <= 4. 12 warps, M <= 4: 1 tile with 2 or
//                    4 steps, 2 with 2 (group 128); 1 tile with 2 (group 64)
//   folded, staged   M <= 16, group 128: 16 warps, 2 tiles, 2 steps; 8
//                    warps, 2 tiles, 2 steps, M = 9..16
//   scaled           M <= 8, 8 warps: 1 or 2 tiles with 2 steps (group 32)
//                    or 4 (group 64), 2 tiles with 2 steps (group 64); 4
//                    tiles and 2 steps (group 64, 128);
//                    staged, 2 tiles and 4 steps (group 128), or 16 warps,
//                    2 tiles and 2 steps (group 128). M = 9..16,
//                    group 64 / 128: 16 warps, 2 steps, 2 or 4 tiles; A
//                    staged with group 128; and 8 warps, 4 tiles, staged
//   two chunks       M <= 4, 2 steps: folded, 12 warps, 1 tile, group 32 /
//   a warp           64; staged and scaled, 8 warps, 2 tiles, group 32
bool gemv_built(const MmArgs& args, const GemvShape& s) {
  const int group = int(args.group_size);
  if ((s.steps != 2 && s.steps != 4) || s.steps * 64 % group != 0) return false;
  if (s.buffers == 2) {
    if (group > 64 || args.m > 4 || s.steps != 2) return false;
    const bool folded12 = s.tiles == 1 && s.warps == kGemvWarps12 && !s.staged_a && !s.scaled_w;
    const bool staged8 = group == 32 && s.tiles == 2 && s.warps == kGemvWarps && s.staged_a && s.scaled_w;
    return folded12 || staged8;
  }
  if (s.buffers != 1) return false;
  // Staged A, 16 warps, 2 tiles, 2 steps (group 128, M <= 16): folded or scaled.
  const bool staged16 = group == 128 && args.m <= 16 && s.tiles == 2 && s.steps == 2 && s.warps == 2 * kGemvWarps;
  if (!s.scaled_w) {
    // ... and folded with 8 warps at M = 9..16.
    const bool staged8_warps = group == 128 && args.m > 8 && args.m <= 16 && s.tiles == 2 && s.steps == 2 &&
                               s.warps == kGemvWarps;
    if (s.staged_a) return staged16 || staged8_warps;
    const bool tiles_ok = args.m <= 8    ? s.tiles == 1 || s.tiles == 2 || s.tiles == 4
                          : args.m <= 16 ? s.tiles == 2 || s.tiles == 4
                                         : s.tiles == 1;
    return tiles_ok && (s.warps == kGemvWarps ||
                        (s.warps == 2 * kGemvWarps && args.m <= 8 && s.tiles == 4 && s.steps == 2 && group == 128) ||
                        (s.warps == 2 * kGemvWarps && args.m <= 4 && s.tiles == 1 && s.steps == 2 && group == 128) ||
                        (s.warps == kGemvWarps12 && args.m <= 4 && s.tiles * s.steps <= 4 && group == 128) ||
                        (s.warps == kGemvWarps12 && args.m <= 4 && s.tiles == 1 && s.steps == 2 && group == 64));
  }
  if (args.m <= 8) {
    if (s.staged_a && staged16) return true;
    if (s.warps != kGemvWarps || group > 128) return false;
    if (s.staged_a) return group == 128 && s.tiles == 2 && s.steps == 4;
    if (s.tiles == 4) return group >= 64 && s.steps == 2;
    return group <= 64 && (s.tiles == 1 || s.tiles == 2) &&
           (s.steps == (group == 32 ? 2 : 4) || (group == 64 && s.tiles == 2 && s.steps == 2));
  }
  if (args.m > 16 || (group != 64 && group != 128) || s.steps != 2) return false;
  if (s.warps == kGemvWarps) return group == 128 && s.staged_a && s.tiles == 4;
  return s.warps == 2 * kGemvWarps && (s.tiles == 2 || s.tiles == 4) && (!s.staged_a || group == 128);
}

// M = 9..16: a GEMM (gemm_wgmma, else gemm_mma) on the largest weights and
// on deep ones (K >= 1.5 N): 8192 x 28672, 28672 x 8192 and 14336 x 4096 ran
// 1.0-1.25x faster in gemm_mma, 8192 x 8192, 4096 x 14336 and 4096 x 4096
// 1.1-1.2x slower (v4); gemm_wgmma and gemv_mma tie on 8192 x 8192 (v5).
// With gemm_wgmma, wide ones too (N >= 3 K): 4096 x 14336 at M = 16 ran in
// 17.7 us against gemv_mma's 22.9 (v7.2); but deep ones below 2^27 weights
// stay with gemv_mma where it stages A (14336 x 4096: 19.0 us against
// gemm_wgmma's 23.3, v8). And from 2^26 weights with K <= 8192, where
// gemm_wgmma's tiles split over clusters of blocks alone on their SMs with
// stages of 4 steps (gemm.cu): 8192 x 8192 at M = 16 18.0 us against
// gemv_mma's 18.6 (v12). Without gemm_wgmma, staged A is unmeasured
// against gemm_mma: v4's rule.
bool gemm_for_m16(const MmArgs& args, bool wgmma) {
  // v27: gemv_mma's whole chunks cut its instructions per chunk at 16 rows
  // by a third: with gemm_wgmma present, group 128 with A staged stays with
  // gemv_mma (1.02-1.17x over gemm_wgmma's grids on 4096 x 14336, 8192 x
  // 8192 and 28672 x 8192, level on 8192 x 28672); INT4MM_GEMV16=0 restores
  // the rule below. Not group 64, whose direct 16-warp kernels ran
  // 0.72-0.99x gemm_wgmma's speed where the rule moved them; not measured
  // against gemm_mma (other GPUs).
  static const bool gemv16 = switched_on("INT4MM_GEMV16");
  if (gemv16 && wgmma && args.group_size == 128 && a_rows_16_byte_aligned(args)) return false;
  const int64_t weights = args.n * args.k;
  if (weights >= (int64_t(1) << 27)) return true;
  if (weights < (int64_t(1) << 25)) return false;
  const bool deep = 2 * args.k >= 3 * args.n;
  if (wgmma) {
    return args.n >= 3 * args.k || (weights >= (int64_t(1) << 26) && args.k <= 8192) ||
           (deep && !gemv_shape(args).staged_a);
  }
  return deep;
}

template <typename T, int kGroup, int kMTiles, int kTiles, int kSteps, int kWarps = kGemvWarps, bool kStagedA = false,
          bool kScaledW = false, int kBuffers = 1>
void launch_mma(const MmArgs& args, cudaStream_t stream) {
  // Blocks per SM the registers must allow: the most each shape fits
  // without spills on sm_90a, or the faster of two that do (v6); 16 warps:
  // one block, but two with 1 tile; 12 warps, two chunks a warp, or A
  // staged at 16 rows with 8 warps (2 or 4 tiles): two. 8 warps with 1
  // tile of 2 steps (group 128, or scaled): four, the 64 registers it took
  // unbounded before v27's whole chunks (which need 68-72 without the
  // bound).
  constexpr int kFragments = kTiles * kMTiles;
  constexpr bool kOneShortTile = kFragments == 1 && kSteps == 2 && (kGroup == 128 || kScaledW);
  constexpr bool kStaged16 = kMTiles == 2 && kStagedA && kWarps == kGemvWarps;  // two per SM
  constexpr bool kWide1 = kWarps > kGemvWarps12 && kFragments == 1;              // 16 warps, 1 tile: two per SM
  constexpr int kMinBlocks = kWarps == kGemvWarps12 || kBuffers == 2 || kStaged16 || kWide1               ? 2
                             : kWarps > kGemvWarps                                                       ? 1
                             : kOneShortTile                                                             ? 4
                             : kFragments == 1                                                           ? 3
                             : kMTiles == 1 && kTiles == 2 && kSteps == 2 && (kGroup == 128 || kScaledW) ? 3
                             : kMTiles == 1 || (kFragments == 4 && kSteps == 2)                          ? 2
                                                                                                         : 1;
  launch_gemv_mma<T, kGroup, kMTiles, kTiles, kWarps, kSteps, kStagedA, kScaledW, kMinBlocks, kBuffers>(
      static_cast<const T*>(args.a), args.lda, reinterpret_cast<const uint4*>(args.packed),
      static_cast<const T*>(args.sz), static_cast<T*>(args.c), args.ldc, int(args.m), int(args.n), int(args.k), stream);
}

template <int kGroup, int kM>
void launch_simt(const MmArgs& args, cudaStream_t stream) {
  gemv_simt_kernel<kGroup, kM, kGemvWarps, kGemvSteps><<<tiles(args), kGemvWarps * 32, 0, stream>>>(
      static_cast<const float*>(args.a), args.lda, reinterpret_cast<const uint4*>(args.packed),
      static_cast<const float*>(args.sz), static_cast<float*>(args.c), args.ldc, int(args.m), int(args.n), int(args.k));
  INT4MM_CUDA_CHECK_LAUNCH("gemv_simt_kernel");
}

// gemv_mma's launch table, one instantiation per shape of gemv_built:
// folded weights (per-group fold) ...
template <typename T, int kGroup, int kMTiles, int kTiles>
void launch_folded(const MmArgs& args, const GemvShape& shape, cudaStream_t stream) {
  if constexpr (kGroup == 128 && kTiles == 2) {
    if constexpr (kMTiles == 2) {
      if (shape.staged_a && shape.warps == kGemvWarps) {
        return launch_mma<T, kGroup, 2, 2, 2, kGemvWarps, true>(args, stream);
      }
    }
    if (shape.staged_a) return launch_mma<T, kGroup, kMTiles, 2, 2, 2 * kGemvWarps, true>(args, stream);
  }
  if constexpr (kGroup == 128 && kMTiles == 1 && (kTiles == 4 || kTiles == 1)) {
    if (shape.warps == 2 * kGemvWarps) return launch_mma<T, kGroup, 1, kTiles, 2, 2 * kGemvWarps>(args, stream);
  }
  if constexpr (kGroup == 128 && kMTiles == 1 && kTiles <= 2) {
    if (shape.warps == kGemvWarps12) {
      if constexpr (kTiles == 1) {
        if (shape.steps == 4) return launch_mma<T, kGroup, 1, 1, 4, kGemvWarps12>(args, stream);
      }
      return launch_mma<T, kGroup, 1, kTiles, 2, kGemvWarps12>(args, stream);
    }
  }
  if constexpr (kGroup <= 64 && kMTiles == 1 && kTiles == 1) {
    if (shape.buffers == 2) return launch_mma<T, kGroup, 1, 1, 2, kGemvWarps12, false, false, 2>(args, stream);
    if constexpr (kGroup == 64) {
      if (shape.warps == kGemvWarps12) return launch_mma<T, kGroup, 1, 1, 2, kGemvWarps12>(args, stream);
    }
  }
  if constexpr (kGroup <= 128) {  // 2 steps hold whole groups
    if (shape.steps == 2) return launch_mma<T, kGroup, kMTiles, kTiles, 2>(args, stream);
  }
  launch_mma<T, kGroup, kMTiles, kTiles, 4>(args, stream);
}

// ... and weights scaled in registers (group <= 128; 64 / 128 at M = 9..16).
template <typename T, int kGroup>
void launch_scaled(const MmArgs& args, const GemvShape& shape, cudaStream_t stream) {
  constexpr int kWarps16 = 2 * kGemvWarps;
  if constexpr (kGroup <= 128) {
    if (args.m <= 8) {
      if constexpr (kGroup >= 64) {
        if (shape.tiles == 4) return launch_mma<T, kGroup, 1, 4, 2, kGemvWarps, false, true>(args, stream);
      }
      if constexpr (kGroup == 128) {  // staged
        if (shape.warps == kWarps16) return launch_mma<T, kGroup, 1, 2, 2, kWarps16, true, true>(args, stream);
        launch_mma<T, kGroup, 1, 2, 4, kGemvWarps, true, true>(args, stream);
      } else {
        constexpr int kSteps = kGroup == 32 ? 2 : 4;
        if constexpr (kGroup == 32) {
          if (shape.buffers == 2) return launch_mma<T, kGroup, 1, 2, 2, kGemvWarps, true, true, 2>(args, stream);
        }
        if (shape.tiles == 2 && shape.steps == 2) {
          return launch_mma<T, kGroup, 1, 2, 2, kGemvWarps, false, true>(args, stream);
        }
        if (shape.tiles == 2) return launch_mma<T, kGroup, 1, 2, kSteps, kGemvWarps, false, true>(args, stream);
        launch_mma<T, kGroup, 1, 1, kSteps, kGemvWarps, false, true>(args, stream);
      }
    } else if constexpr (kGroup >= 64) {
      if constexpr (kGroup == 128) {
        if (shape.staged_a && shape.tiles == 4 && shape.warps == kGemvWarps) {
          return launch_mma<T, kGroup, 2, 4, 2, kGemvWarps, true, true>(args, stream);
        }
        if (shape.staged_a && shape.tiles == 4) {
          return launch_mma<T, kGroup, 2, 4, 2, kWarps16, true, true>(args, stream);
        }
        if (shape.staged_a) return launch_mma<T, kGroup, 2, 2, 2, kWarps16, true, true>(args, stream);
      }
      if (shape.tiles == 4) return launch_mma<T, kGroup, 2, 4, 2, kWarps16, false, true>(args, stream);
      launch_mma<T, kGroup, 2, 2, 2, kWarps16, false, true>(args, stream);
    }
  }
}

void gemv_mma(const MmArgs& args, const GemvShape& shape) {
  const cudaStream_t stream = stream_of(*args.options);
  dispatch_group_size(args.group_size, [&](auto group) {
    constexpr int kGroup = decltype(group)::value;
    dispatch_float(args.dtype, [&](auto tag) {
      using T = decltype(tag);
      if constexpr (!std::is_same_v<T, float>) {
        if (shape.scaled_w) {
          launch_scaled<T, kGroup>(args, shape, stream);
        } else if (args.m <= 8) {
          shape.tiles == 4   ? launch_folded<T, kGroup, 1, 4>(args, shape, stream)
          : shape.tiles == 2 ? launch_folded<T, kGroup, 1, 2>(args, shape, stream)
                             : launch_folded<T, kGroup, 1, 1>(args, shape, stream);
        } else if (args.m <= 16) {
          shape.tiles == 4 ? launch_folded<T, kGroup, 2, 4>(args, shape, stream)
                           : launch_folded<T, kGroup, 2, 2>(args, shape, stream);
        } else {
          launch_folded<T, kGroup, 4, 1>(args, shape, stream);
        }
      }
    });
  });
}

void gemv_simt(const MmArgs& args) {
  const cudaStream_t stream = stream_of(*args.options);
  dispatch_group_size(args.group_size, [&](auto group) {
    constexpr int kGroup = decltype(group)::value;
    if (args.m == 1) {
      launch_simt<kGroup, 1>(args, stream);
    } else if (args.m == 2) {
      launch_simt<kGroup, 2>(args, stream);
    } else {
      launch_simt<kGroup, 4>(args, stream);
    }
  });
}

}  // namespace

const char* kernel_name(MmKernel kernel) {
  switch (kernel) {
    case MmKernel::kAuto: return "auto";
    case MmKernel::kGemvMma: return "gemv_mma";
    case MmKernel::kGemmMma: return "gemm_mma";
    case MmKernel::kGemvSimt: return "gemv_simt";
    case MmKernel::kGemmWgmma: return "gemm_wgmma";
    case MmKernel::kDequantGemm: return "dequant_cublas";
  }
  return "unknown";
}

bool supports(MmKernel kernel, const MmArgs& args) {
  const bool int32_sizes = args.n < (int64_t(1) << 31) && args.k < (int64_t(1) << 31) &&
                           args.m < (int64_t(1) << 31);
  switch (kernel) {
    case MmKernel::kAuto:
    case MmKernel::kDequantGemm: return int32_sizes;
    case MmKernel::kGemvMma:
      // 32-bit loads of activation pairs and scale/zero pairs.
      return int32_sizes && args.dtype != DType::kFloat32 && args.m <= kMmaMaxM &&
             args.lda % 2 == 0 && aligned(args.a, 4) && aligned(args.sz, 4);
    case MmKernel::kGemmMma:
      // 16-byte loads of activation rows; groups end on 64-k steps.
      return int32_sizes && args.dtype != DType::kFloat32 && args.group_size >= 64 &&
             args.lda % 8 == 0 && aligned(args.a, 16) && aligned(args.sz, 4);
    case MmKernel::kGemmWgmma:
      // As gemm_mma, any group size; sm_90a code runs on compute capability 9.0 only.
      return int32_sizes && args.dtype != DType::kFloat32 && args.lda % 8 == 0 &&
             aligned(args.a, 16) && aligned(args.sz, 4) && wgmma_available();
    case MmKernel::kGemvSimt:
      // float2 loads of activation pairs and scale/zero pairs.
      return int32_sizes && args.dtype == DType::kFloat32 && args.m <= kSimtMaxM &&
             args.lda % 2 == 0 && aligned(args.a, 8) && aligned(args.sz, 8);
  }
  return false;
}

MmKernel choose_kernel(const MmArgs& args) {
  const bool wgmma = supports(MmKernel::kGemmWgmma, args);
  const bool gemv = args.m <= kGemvLastM || (args.m <= 16 && !gemm_for_m16(args, wgmma));
  const MmKernel first = gemv    ? MmKernel::kGemvMma
                         : wgmma ? MmKernel::kGemmWgmma
                         : args.m <= kGemmLastM ? MmKernel::kGemmMma
                                                : MmKernel::kDequantGemm;
  const MmKernel order[] = {first, MmKernel::kGemvMma, MmKernel::kGemvSimt};
  for (MmKernel kernel : order) {
    if (supports(kernel, args)) return kernel;
  }
  return MmKernel::kDequantGemm;
}

void mm_with(MmKernel kernel, const MmArgs& args) {
  if (kernel == MmKernel::kAuto) kernel = choose_kernel(args);
  if (!supports(kernel, args)) {
    fail("weight_int4pack_mm", "kernel ", kernel_name(kernel), " does not support M=", args.m,
         " dtype=", dtype_name(args.dtype), " lda=", args.lda);
  }
  switch (kernel) {
    case MmKernel::kGemvMma: gemv_mma(args, gemv_shape(args)); break;
    case MmKernel::kGemvSimt: gemv_simt(args); break;
    case MmKernel::kGemmMma: gemm_mma_mm(args); break;
    case MmKernel::kGemmWgmma: gemm_wgmma_mm(args); break;
    default: dequant_gemm_mm(args); break;
  }
}

void mm(const MmArgs& args) {
  const DeviceGuard guard(args.device);
  const char* op = "weight_int4pack_mm";
  check_device_pointer(op, "A", args.a, args.device);
  check_device_pointer(op, "packed", args.packed, args.device);
  check_device_pointer(op, "scales_and_zeros", args.sz, args.device);
  check_device_pointer(op, "C", args.c, args.device);
  if (args.n >= (int64_t(1) << 31) || args.k >= (int64_t(1) << 31) || args.m >= (int64_t(1) << 31)) {
    fail("weight_int4pack_mm", "M, N and K must each be below 2^31 on CUDA, got M=", args.m,
         " N=", args.n, " K=", args.k);
  }
  mm_with(MmKernel::kAuto, args);
}

bool available() {
  // Asked once per process: the validation layer calls this on every op.
  static const bool present = [] {
    int count = 0;
    return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  }();
  return present;
}

void gemv_mma_with(const MmArgs& args, const GemvShape& shape) {
  if (!gemv_built(args, shape)) {
    fail("gemv_mma_with", "no kernel for tiles=", shape.tiles, ", steps=", shape.steps, ", warps=", shape.warps,
         ", staged_a=", shape.staged_a ? "true" : "false", ", scaled_w=", shape.scaled_w ? "true" : "false",
         ", buffers=", shape.buffers, " at M=", args.m, ", group_size=", args.group_size,
         " (folded: 8 warps, tiles 1, 2 or 4 up to M = 8, 2 or 4 up to 16, 1 up to 32, steps 2 or 4 holding whole"
         " groups; 16 warps with 4 tiles, 2 steps, group 128 up to M = 8, or 1 tile up to M = 4; 12 warps with 1"
         " tile and 2 or 4 steps or"
         " 2 tiles and 2 steps, group 128 up to M = 4; staged only with 16 warps, 2 tiles, 2 steps, group 128 at"
         " M = 9..16."
         " Scaled up to M = 8, 8 warps: 1 or 2 tiles with 2 steps (group 32) or 4 (group 64), 2 tiles and 2 steps"
         " (group 64), 4 tiles and 2 steps (group >= 64), staged 2 tiles and 4 steps (group 128); M = 9..16,"
         " group <= 128: 16 warps, 2 steps, 2 tiles or 4 (group >= 64), staged with group 128, or 8 warps, 4 tiles,"
         " staged (group 128). Two buffers, 2 steps"
         " up to M = 4: folded, 12 warps, 1 tile, group 32 or 64; staged and scaled, 8 warps, 2 tiles, group 32)");
  }
  if (!supports(MmKernel::kGemvMma, args)) {
    fail("gemv_mma_with", "gemv_mma does not support M=", args.m, " dtype=", dtype_name(args.dtype),
         " lda=", args.lda);
  }
  if (shape.staged_a && !a_rows_16_byte_aligned(args)) {
    fail("gemv_mma_with", "staged A needs 16-byte aligned rows of A (lda % 8 == 0, A 16-byte aligned), got lda=",
         args.lda);
  }
  gemv_mma(args, shape);
}

}  // namespace int4mm::detail::cuda
