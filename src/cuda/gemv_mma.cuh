// gemv_mma: int4 x {fp16, bf16} GEMV for small M on the tensor cores.
//
// Reads the CUDA layout (layout.h): kTiles 16-row tiles per block, K split
// over the block's warps; each activation (B) fragment a warp loads feeds
// kTiles mmas, so activation traffic per weight byte falls with kTiles.
// Each lane streams 16 bytes per 64 k per tile (one uint4 = four m16n8k16 A
// fragments), several loads in flight, with an L2 evict-first policy: the
// weights are read exactly once.
//
//            K ─────────────────────────────────────────────►
//   tile  ┌ chunk 0 (warp 0) ┬ chunk 1 (warp 1) ┬ ... ┬ chunk 8 (warp 0) ┬ ...
//   16 n  │ kSteps x 64 k    │                  │     │                  │
//         └──────────────────┴──────────────────┴─────┴──────────────────┘
//   then the warps' partial C fragments are summed through shared memory.
//
// Activations, two ways (kStagedA):
//   direct   each lane loads its B fragments from global memory, 4-byte
//            pairs (two per k16 and m-tile): 8 rows x 16 bytes per warp load
//   staged   the warp copies its chunk of A (8 kMTiles rows x kSteps x 64 k)
//            into its own shared buffer with 16-byte cp.async, full 128-byte
//            lines, zero-filled past M and K; ldmatrix then hands out the B
//            fragments (one x4 per k16 and two m-tiles). At 16 rows, where
//            A's loads outnumber the weights', that is about a quarter of
//            direct's L1 wavefronts and half its L2 sectors (an estimate;
//            measured: docs/cuda.md, v8).
//
// Math, per group g and output (m, n), all in float32 (CONTRACT.md):
//   C[m][n] += scale[g][n] * sum_k A[m][k] * (q[n][k] - 8)  +  zero[g][n] * sum_k A[m][k]
// The first sum is an mma with the exact integers q - 8 (exact in fp16 and
// bf16) against the activations as they are, accumulated in fp32; the second
// is an mma of a ones matrix against the same activation fragment, which puts
// sum_k A[m][k] exactly where the C fragment needs it. No per-weight scale or
// zero is applied, and no weight is rounded. (bf16 takes 128 + q into the
// first sum and zero - 136 scale as the zero: kBiasInFold.)
//
// Scaled weights (kScaledW): each weight becomes (q - 8) * scale + zero in
// one packed FMA, rounded once to T as dequantize + cuBLAS and gemm_wgmma
// round it, and the mma accumulates C directly. That drops the per-group
// partial sums (kTiles x kMTiles x 4 registers), the ones-mma and the fold,
// for one more packed op per fragment register: 4 tiles at 16 rows then fit
// 16 warps per SM, and the fold no longer grows with 1 / group size.
//
// Two chunks a warp (kBuffers = 2): a second set of registers (and a second
// staged-A buffer) into which a warp's next chunk is issued before the
// current one is computed, so that a chunk stays in flight during the
// math. Measured in v25 and v26 (docs/cuda.md): slower at group 128,
// dispatched at M <= 4 for groups 32 and 64 (gemv_shape; INT4MM_GEMV_X2=0:
// off).
//
// Whole chunks (groups 64-256): a chunk whose tiles lie within N and whose
// k lie within K loads without bounds checks, from per-lane bases at fixed
// offsets; only the edge chunks take the checked loads (v27: a third fewer
// instructions per chunk at 16 rows, docs/cuda.md). Staged A copies them
// without checks too where M fills the staged rows (v28).
//
// Folded with A staged (kTileMajor, 2 tiles; M = 9..16 since v28, bf16 at
// M = 2..8 since v29): a chunk's tiles one after another, so that one
// group's partial sums live at a time.
//
// Programmatic dependent launch (launch_gemv_mma decides where): the kernel
// waits for the one before it in the stream before it reads A or writes C,
// and lets the next one start once its loads are issued.
//
// int4 -> 16-bit float without conversions: OR-ing a nibble into the mantissa
// of a magic constant gives magic + q exactly (fp16: 1024 + q, mantissa
// ulp 1 in [1024, 2048); bf16: 128 + q, ulp 1 in [128, 256)); one packed
// subtract then yields q - 8 for two weights at once (bf16's folded kernels
// leave it to the fold).
//
// Limitations:
//   1. M <= 8 * kMTiles (kMTiles <= 4): larger M goes to gemm_mma or cuBLAS.
//   2. A's rows must be 4-byte aligned (lda even, base aligned): the B
//      fragment is loaded as 32-bit pairs; 16-byte aligned (lda % 8 == 0)
//      for staged A. dispatch.cu falls back otherwise.
//   3. No split-K across blocks: N below ~16 x (number of SMs) leaves SMs idle.
//
// Tested by tests/cuda/test_cuda.cpp, timed by `int4mm bench --backend cuda`.
#pragma once

#include <type_traits>

#include "cuda/common.cuh"
#include "cuda/cuda_internal.h"
#include "cuda/layout.h"

namespace int4mm::detail::cuda {

// --- PTX helpers -----------------------------------------------------------

// An L2 policy that evicts these lines first: streamed weights must not push
// the activations and scales out of L2.
__device__ __forceinline__ uint64_t l2_evict_first_policy() {
  uint64_t policy;
  asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
  return policy;
}

// 16-byte load through the non-coherent path, not kept in L1, evict-first in L2.
__device__ __forceinline__ uint4 load_streaming(const uint4* ptr, uint64_t policy) {
  uint4 v;
  asm volatile(
      "ld.global.nc.L1::no_allocate.L2::cache_hint.v4.u32 {%0, %1, %2, %3}, [%4], %5;"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(ptr), "l"(policy));
  return v;
}

// One (scale, zero) pair, 4 bytes, through the read-only path (LDG.CONSTANT;
// gemv_mma_kernel says where).
template <typename T2, typename T>
__device__ __forceinline__ T2 load_pair_read_only(const T* ptr) {
  const unsigned int u = __ldg(reinterpret_cast<const unsigned int*>(ptr));
  return *reinterpret_cast<const T2*>(&u);
}

__device__ __forceinline__ void prefetch_l2(const void* ptr) { asm volatile("prefetch.global.L2 [%0];" ::"l"(ptr)); }

// 16-byte global -> shared copy (dst: a shared-space address), zero-filled
// where !valid (src-size 0: nothing is read). No L2::cache_hint variant:
// with nvcc 13.0, cp.async with an evict-first createpolicy operand compiled
// in some kernels to an LDGSTS whose uniform descriptor registers were never
// written, an illegal instruction on the H100 (docs/cuda.md, v5).
__device__ __forceinline__ void cp_async_16(uint32_t d, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(valid ? 16 : 0));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;"); }

template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(kPending));
}

// Four 8x8 16-bit matrices from shared memory; lane l gives the address of
// row l % 8 of matrix l / 8 and receives, per matrix, row l / 4, columns
// 2 (l % 4) and 2 (l % 4) + 1: an mma B fragment half.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&d)[4], const void* row) {
  const uint32_t address = uint32_t(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
               : "r"(address));
}

// Two of them (lanes 0-15 give the row addresses): one B fragment.
__device__ __forceinline__ void ldmatrix_x2(uint32_t (&d)[2], const void* row) {
  const uint32_t address = uint32_t(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];"
               : "=r"(d[0]), "=r"(d[1])
               : "r"(address));
}

__device__ __forceinline__ uint32_t word_of(const uint4& v, int j) {
  return j == 0 ? v.x : j == 1 ? v.y : j == 2 ? v.z : v.w;
}

// D = A * B + D for m16n8k16, fp32 accumulators, T in {half, bf16}; with
// kZeroC, D = A * B (the accumulator's zeros come from RZ, not from moves).
template <typename T, bool kZeroC = false>
__device__ __forceinline__ void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#define INT4MM_MMA_M16N8K16(TYPE, C)                                                                 \
  "mma.sync.aligned.m16n8k16.row.col.f32." TYPE "." TYPE ".f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, " \
  "{%8, %9}, " C ";"
  if constexpr (kZeroC && std::is_same_v<T, half>) {
    asm volatile(INT4MM_MMA_M16N8K16("f16", "{%10, %10, %10, %10}")
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "f"(0.0f));
  } else if constexpr (kZeroC) {
    asm volatile(INT4MM_MMA_M16N8K16("bf16", "{%10, %10, %10, %10}")
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "f"(0.0f));
  } else if constexpr (std::is_same_v<T, half>) {
    asm volatile(INT4MM_MMA_M16N8K16("f16", "{%0, %1, %2, %3}")
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(INT4MM_MMA_M16N8K16("bf16", "{%0, %1, %2, %3}")
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
#undef INT4MM_MMA_M16N8K16
}

template <typename T2>
__device__ __forceinline__ uint32_t as_u32(T2 v) {
  return *reinterpret_cast<uint32_t*>(&v);
}
template <typename T2>
__device__ __forceinline__ T2 as_pair(uint32_t u) {
  return *reinterpret_cast<T2*>(&u);
}

// (x & mask) | bits in one LOP3 (the compiler emits an AND and an OR when
// both constants are immediates).
__device__ __forceinline__ uint32_t and_or(uint32_t x, uint32_t mask, uint32_t bits) {
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xea;" : "=r"(r) : "r"(x), "r"(mask), "r"(bits));
  return r;
}

// One packed word (8 nibbles, layout.h order) -> the four bf16 A-fragment
// registers, each two exact values 128 + q (kBf16MagicBias + q - 8): bf16
// has 7 mantissa bits, so only the low nibble position works, and the
// nibbles are shifted there.
constexpr int kBf16MagicBias = 136;
__device__ __forceinline__ void magic_word_bf16(uint32_t x, uint32_t (&frag)[4]) {
  constexpr uint32_t kMagic = 0x43004300u;  // bf162(128, 128)
#pragma unroll
  for (int i = 0; i < 4; ++i) frag[i] = and_or(x >> (4 * i), 0x000f000fu, kMagic);
}

// One packed word -> the four A-fragment registers, each two exact values
// q - 8.
template <typename T>
__device__ __forceinline__ void dequant_word(uint32_t x, uint32_t (&frag)[4]) {
  if constexpr (std::is_same_v<T, half>) {
    // fp16: the low nibble of each byte lands as 1024 + q, the high nibble as
    // 1024 + 16 q (no shift needed); fix both with one packed op each.
    constexpr uint32_t kMagic = 0x64006400u;                       // half2(1024, 1024)
    const half2 kLowBias = __floats2half2_rn(1032.0f, 1032.0f);    // 1024 + 8
    const half2 kSixteenth = __floats2half2_rn(0.0625f, 0.0625f);
    const half2 kHighBias = __floats2half2_rn(-72.0f, -72.0f);     // -(1024/16 + 8)
    const uint32_t y = x >> 8;
    frag[0] = as_u32(__hsub2(as_pair<half2>(and_or(x, 0x000f000fu, kMagic)), kLowBias));
    frag[1] = as_u32(__hfma2(as_pair<half2>(and_or(x, 0x00f000f0u, kMagic)), kSixteenth, kHighBias));
    frag[2] = as_u32(__hsub2(as_pair<half2>(and_or(y, 0x000f000fu, kMagic)), kLowBias));
    frag[3] = as_u32(__hfma2(as_pair<half2>(and_or(y, 0x00f000f0u, kMagic)), kSixteenth, kHighBias));
  } else {
    const __nv_bfloat162 kBias = __floats2bfloat162_rn(float(kBf16MagicBias), float(kBf16MagicBias));
    magic_word_bf16(x, frag);
#pragma unroll
    for (int i = 0; i < 4; ++i) frag[i] = as_u32(__hsub2(as_pair<__nv_bfloat162>(frag[i]), kBias));
  }
}

// w = (q - 8) * scale + zero for the four registers of a fragment from
// dequant_word: registers 0 and 2 hold row g of the tile, 1 and 3 row g + 8;
// lo and hi are those rows' (scale, zero) pairs. One packed FMA per register,
// rounded once to T (as dequantize + cuBLAS rounds each weight).
template <typename T2>
__device__ __forceinline__ void scale_fragment(uint32_t (&frag)[4], T2 lo, T2 hi) {
  const T2 scale[2] = {T2{lo.x, lo.x}, T2{hi.x, hi.x}};
  const T2 zero[2] = {T2{lo.y, lo.y}, T2{hi.y, hi.y}};
#pragma unroll
  for (int r = 0; r < 4; ++r) frag[r] = as_u32(__hfma2(as_pair<T2>(frag[r]), scale[r & 1], zero[r & 1]));
}

// --- the kernel --------------------------------------------------------------

template <typename T,      // half or __nv_bfloat16: A, scales_and_zeros and C
          int kGroupSize,  // 32, 64, 128 or 256
          int kMTiles,     // M <= 8 * kMTiles
          int kTiles,      // 16-row tiles per block: each B fragment serves kTiles mmas
          int kWarps,      // warps per block, splitting K
          int kSteps,      // 64-k steps per chunk: kTiles * kSteps 16-byte loads per lane
          bool kStagedA,   // activations through shared memory (dynamic: gemv_staged_a_bytes)
          bool kScaledW,   // weights scaled in registers and rounded to T; no per-group fold
          int kMinBlocks,  // blocks per SM the register budget must allow
          int kBuffers = 1>  // chunks a warp holds: 2 issues the next chunk's loads before computing this one
__global__ void __launch_bounds__(kWarps * 32, kMinBlocks)
    gemv_mma_kernel(const T* __restrict__ a,         // [m, k], row stride lda
                    int64_t lda,
                    const uint4* __restrict__ packed,  // layout.h
                    const T* __restrict__ sz,          // [k / kGroupSize, n, 2]
                    T* __restrict__ c,                 // [m, n], row stride ldc
                    int64_t ldc, int m, int n, int k,
                    bool early) {  // launched with PDL (launch_gemv_mma)
  static_assert(kSteps * 64 % kGroupSize == 0, "a chunk must hold whole groups");
  static_assert(kBuffers == 1 || kBuffers == 2, "one chunk a warp, or two");
  // How a chunk's loads are issued, by measurement (docs/cuda.md, v18):
  //   kReadOnlySz   the scale/zero pairs through LDG.CONSTANT: 1.01-1.14x at
  //                 group 32 (M <= 8), 1.00-1.03x at 128 and 256 (M <= 4).
  //                 Group 64 lost up to 0.92x with it (4 tiles) and the
  //                 16-warp kernels up to 0.92x (M = 16, with kWeightsFirst):
  //                 both keep v17's generic loads and order (same SASS as v17).
  //                 The 12-warp kernels take it (1.00-1.05x, v19).
  //   kWeightsFirst the weights' loads before A's copy is staged: 1.05-1.08x
  //                 at M = 5..8 on 8192 x 8192, 14336 x 4096 and 28672 x 8192
  //                 (0.95x on 4096 x 4096). In v17's order ptxas issued six
  //                 of the eight weight loads after the wait for A's copy once
  //                 the pairs' loads were LDG (0.88-0.94x).
  constexpr bool kReadOnlySz = kGroupSize != 64 && kWarps < 16;
  constexpr bool kWeightsFirst = kStagedA && kWarps <= 8;
  // bf16, folded: the mmas take the weights as the magic leaves them, 128 +
  // q, and the fold takes the bias off in float32, as zero - 136 scale
  // against sum A: four packed subtracts fewer per word (v28). The sum's
  // float32 roundings then scale with 136 / |q - 8| instead of 1; bf16 has
  // the bits for that (tests/test_util.h's bound), fp16's 1024 + q would
  // need 8 times as many, and keeps the subtract.
  constexpr bool kBiasInFold = std::is_same_v<T, __nv_bfloat16>;
  // Folded with A staged: the chunk's tiles one after another (compute_chunk
  // says why).
  constexpr bool kTileMajor = !kScaledW && kStagedA && kTiles > 1;
  using T2 = typename Pair<T>::type;
  constexpr int kChunkK = kSteps * 64;
  constexpr int kGroupsPerChunk = kChunkK / kGroupSize;
  constexpr int kK16PerGroup = kGroupSize / 16;

  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int g = lane >> 2;  // mma "groupID": C rows g, g + 8; B column g
  const int t = lane & 3;   // mma "threadID_in_group": C columns 2t, 2t + 1
  const int steps = (k + 63) / 64;
  const int chunks = (steps + kSteps - 1) / kSteps;
  const int tiles = (n + 15) / 16;
  const int tile0 = blockIdx.x * kTiles;
  [[maybe_unused]] const int opaque_zero = m >> 31;  // m >= 0 (kTileMajor's reloads)
  const uint64_t policy = l2_evict_first_policy();

  // Whole chunks: where every tile of the block lies within N and every k
  // of the chunk within K, a chunk's loads need no bounds checks, and each
  // lane's addresses are fixed offsets from bases set once here (a chunk
  // moves them by its stride). The loads then take no predicates, selects
  // or zero-fill moves; only the chunks at the edges keep the checked
  // forms. (v27: with every load checked, the 16-row kernels issued about
  // as many instructions per chunk on addresses and checks as on math.)
  // Group 32 (four groups a chunk) keeps the checked loads everywhere: with
  // whole chunks its kernels ran 0.93-0.99x at M <= 4 (v27).
  constexpr bool kWholeChunks = kGroupSize >= 64;
  const bool tiles_whole = kWholeChunks && tile0 + kTiles <= n / 16;
  const int whole_chunks = tiles_whole ? k / kChunkK : 0;  // chunks below this one are whole
  const uint32_t tile_loads = uint32_t(steps) * 32;  // 16-byte loads of one tile
  const uint4* const w_lane = packed + int64_t(tile0) * tile_loads + lane;
  const uint32_t group_stride = uint32_t(n) * 2;  // elements of sz per group
  const T* const sz_lane = sz + (int64_t(tile0) * 16 + g) * 2;  // tile tt at + 32 tt, row g + 8 at + 16

  // Direct A: the rows this lane feeds into the B fragment (column g of each
  // m-tile); a row past M reads as zeros.
  const T* a_row[kMTiles];
  bool row_ok[kMTiles];
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
    const int row = mt * 8 + g;
    row_ok[mt] = row < m;
    a_row[mt] = a + int64_t(row_ok[mt] ? row : 0) * lda + 2 * t;
  }
  // Staged A: this warp's buffer, [row][16-byte unit] with unit u of row r
  // at u ^ (r % 8) (ldmatrix's 8 rows hit 8 different bank groups). Lane l
  // gives ldmatrix row l % 8 of matrix l / 8: m-tile 2 p + l / 16 (x4) and
  // k half (l / 8) % 2; ld_unit[j] is the byte offset of its swizzled unit
  // for k16 j of a step.
  constexpr int kRowsA = kMTiles * 8;
  constexpr int kUnits = kChunkK / 8;  // per row and chunk
  constexpr int kRowBytes = kUnits * 16;
  constexpr int kBufferBytes = kRowsA * kRowBytes;  // a warp's chunk of A
  extern __shared__ uint4 gemv_staged_a[];
  const uint32_t a_buf = uint32_t(__cvta_generic_to_shared(gemv_staged_a)) + warp * kBuffers * kBufferBytes;
  const uint8_t* const ld_base = reinterpret_cast<const uint8_t*>(gemv_staged_a) + warp * kBuffers * kBufferBytes +
                                 ((kMTiles > 1 ? (lane >> 4) * 8 : 0) + (lane & 7)) * kRowBytes;
  uint32_t ld_unit[4];
#pragma unroll
  for (int j = 0; j < 4; ++j) ld_unit[j] = ((2 * j + ((lane >> 3) & 1)) ^ (lane & 7)) * 16;
  // Each cp.async covers kCopyRows whole rows of the chunk; a lane copies
  // the same 16-byte unit of rows copy_row, copy_row + kCopyRows, ...
  static_assert(32 % kUnits == 0, "a warp's copy covers whole rows");
  constexpr int kCopyRows = 32 / kUnits;
  const int copy_row = lane / kUnits, copy_unit = lane % kUnits;
  const T* const a_copy = a + int64_t(copy_row) * lda + copy_unit * 8;
  const int64_t a_copy_stride = kCopyRows * lda;
  // A whole chunk copies without checks where all kRowsA rows lie within M
  // (rows_whole: the loop over whole chunks has a copy of its own for it;
  // v28: at M = 16 the checks took 5 of every 6 instructions of the copy).
  auto stage_a = [&](int chunk, int buf, auto whole, auto rows_whole) {
    constexpr bool kUnchecked = decltype(whole)::value && decltype(rows_whole)::value;
    const bool k_ok = chunk * kChunkK + copy_unit * 8 < k;
    const T* src = a_copy + int64_t(chunk) * kChunkK;
    const uint32_t dst = a_buf + buf * kBufferBytes;
#pragma unroll
    for (int i = 0; i < kRowsA / kCopyRows; ++i, src += a_copy_stride) {
      const int row = i * kCopyRows + copy_row;
      const bool ok = kUnchecked || (row < m && k_ok);
      cp_async_16(dst + row * kRowBytes + ((copy_unit ^ (row & 7)) << 4), ok ? src : a, ok);
    }
    cp_async_commit();
  };

  // Programmatic dependent launch: A and C wait for the kernel before this
  // one; the weights and scales must not be what it writes. Where a block
  // holds a whole SM (16 warps), it waits with its warps' first weights on
  // their way to L2: 1.03-1.07x faster at M = 16 (v9). Elsewhere the
  // prefetch's code alone made some shapes up to 1.09x slower.
  if (kWarps >= 16 && early && warp < chunks) {
#pragma unroll
    for (int tt = 0; tt < kTiles; ++tt) {
#pragma unroll
      for (int i = 0; i < kSteps; ++i) {
        if (tile0 + tt < tiles && warp * kSteps + i < steps) {
          prefetch_l2(packed + (int64_t(tile0 + tt) * steps + warp * kSteps + i) * 32 + lane);
        }
      }
    }
  }
  grid_dependency_wait();

  uint32_t ones[4];
  {
    const uint32_t one = as_u32(T2{T(1.0f), T(1.0f)});
    ones[0] = ones[1] = ones[2] = ones[3] = one;
  }

  float acc[kTiles][kMTiles][4] = {};

  // Loads of one chunk into buffer `buf`: the weights and the scale/zero
  // pairs of its groups. (buf is a constant wherever this is inlined.)
  uint4 w[kBuffers][kTiles][kSteps];
  T2 sz_cur[kBuffers][kTiles][kGroupsPerChunk][2];
  auto load_pair = [&](const T* p) {
    if constexpr (kReadOnlySz) {
      return load_pair_read_only<T2>(p);
    } else {  // v17's, inline: through a helper it compiled to LDG as well, not LD.E
      return *reinterpret_cast<const T2*>(p);
    }
  };
  auto load_chunk = [&](int chunk, int buf, auto whole) {
    if constexpr (decltype(whole)::value) {
      const uint4* const wc = w_lane + uint64_t(uint32_t(chunk) * (kSteps * 32));
      const T* const szc = sz_lane + uint64_t(uint32_t(chunk * kGroupsPerChunk)) * group_stride;
#pragma unroll
      for (int tt = 0; tt < kTiles; ++tt) {
#pragma unroll
        for (int i = 0; i < kSteps; ++i) {
          w[buf][tt][i] = load_streaming(wc + uint64_t(tt) * tile_loads + i * 32, policy);
        }
#pragma unroll
        for (int gi = 0; gi < kGroupsPerChunk; ++gi) {
          const T* p = szc + uint64_t(gi) * group_stride + tt * 32;
          sz_cur[buf][tt][gi][0] = load_pair(p);
          sz_cur[buf][tt][gi][1] = load_pair(p + 16);
        }
      }
    } else {
#pragma unroll
      for (int tt = 0; tt < kTiles; ++tt) {
        const bool tile_ok = tile0 + tt < tiles;
        const uint4* base = packed + int64_t(tile0 + tt) * steps * 32 + lane;
#pragma unroll
        for (int i = 0; i < kSteps; ++i) {
          const int step = chunk * kSteps + i;
          w[buf][tt][i] = tile_ok && step < steps ? load_streaming(base + int64_t(step) * 32, policy)
                                                  : make_uint4(0, 0, 0, 0);
        }
        const int row0 = (tile0 + tt) * 16 + g;
#pragma unroll
        for (int gi = 0; gi < kGroupsPerChunk; ++gi) {
          const int group = chunk * kGroupsPerChunk + gi;
          const bool group_ok = group * kGroupSize < k;
          const T2 zero2{T(0.0f), T(0.0f)};
          const T* p = sz + (int64_t(group) * n + row0) * 2;
          T2 (&pair)[2] = sz_cur[buf][tt][gi];
          pair[0] = group_ok && row0 < n ? load_pair(p) : zero2;
          pair[1] = group_ok && row0 + 8 < n ? load_pair(p + 16) : zero2;
        }
      }
    }
  };

  // The math of one chunk from buffer `buf` (A staged there too, if staged).
  // Direct A: the lane's rows at the chunk being computed (loop-carried in
  // the loop over whole chunks, so that they stay in registers).
  const T* a_at[kMTiles];
  auto a_at_chunk = [&](int chunk) {
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) a_at[mt] = a_row[mt] + int64_t(chunk) * kChunkK;
  };
  auto compute_chunk = [&](int chunk, int buf, auto whole) {
    [[maybe_unused]] const uint8_t* const ld_buf = ld_base + buf * kBufferBytes;  // staged A
    // The B fragments of k16 sub-tile j of step i: the k halves of each m-tile.
    // (Staged: from the copy at `from`.)
    auto b_fragments = [&](int i, int j, uint32_t (&b)[kMTiles][2], const uint8_t* from = nullptr) {
      if (from == nullptr) from = ld_buf;
      if constexpr (kStagedA && kMTiles == 1) {
        ldmatrix_x2(b[0], from + i * 128 + ld_unit[j]);
      } else if constexpr (kStagedA) {
#pragma unroll
        for (int p = 0; p < kMTiles / 2; ++p) {
          uint32_t d[4];
          ldmatrix_x4(d, from + p * 16 * kRowBytes + i * 128 + ld_unit[j]);
          b[2 * p][0] = d[0], b[2 * p][1] = d[1], b[2 * p + 1][0] = d[2], b[2 * p + 1][1] = d[3];
        }
      } else {
        const int k16 = i * 4 + j;
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt) {
          b[mt][0] = b[mt][1] = 0;
          if (row_ok[mt] && (decltype(whole)::value || chunk * kChunkK + k16 * 16 < k)) {
            b[mt][0] = *reinterpret_cast<const uint32_t*>(a_at[mt] + k16 * 16);
            b[mt][1] = *reinterpret_cast<const uint32_t*>(a_at[mt] + k16 * 16 + 8);
          }
        }
      }
    };
    // Folded: the weights of word j of tile tt's step i as the mma takes them.
    auto folded_word = [&](int tt, int i, int j, uint32_t (&frag)[4]) {
      if constexpr (kBiasInFold) {
        magic_word_bf16(word_of(w[buf][tt][i], j), frag);
      } else {
        dequant_word<T>(word_of(w[buf][tt][i], j), frag);
      }
    };
    // Folded, at the end of group gi of tile tt: scale and zero in float32.
    auto fold = [&](int tt, int gi, const float (&part)[kMTiles][4], const float (&asum)[kMTiles][4]) {
      const T2 (&pair)[2] = sz_cur[buf][tt][gi];
      float2 p0 = make_float2(to_float(pair[0].x), to_float(pair[0].y));
      float2 p1 = make_float2(to_float(pair[1].x), to_float(pair[1].y));
      if constexpr (kBiasInFold) {  // part holds sum A * (q - 8 + bias)
        p0.y = fmaf(-float(kBf16MagicBias), p0.x, p0.y);
        p1.y = fmaf(-float(kBf16MagicBias), p1.x, p1.y);
      }
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
        float (&s)[4] = acc[tt][mt];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const float2 sz2 = e < 2 ? p0 : p1;
          s[e] = fmaf(sz2.x, part[mt][e], s[e]);
          s[e] = fmaf(sz2.y, asum[mt][e], s[e]);
        }
      }
    };
    // Folded: D (+)= A * B, the first k16 of a group starting from zero.
    auto mma_group = [](float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1, bool first) {
      first ? mma_m16n8k16<T, true>(d, a, b0, b1) : mma_m16n8k16<T>(d, a, b0, b1);
    };
    if constexpr (kScaledW) {
#pragma unroll
      for (int i = 0; i < kSteps; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          uint32_t b[kMTiles][2];
          b_fragments(i, j, b);
          const int gi = (i * 4 + j) / kK16PerGroup;
#pragma unroll
          for (int tt = 0; tt < kTiles; ++tt) {
            uint32_t frag[4];
            dequant_word<T>(word_of(w[buf][tt][i], j), frag);
            scale_fragment(frag, sz_cur[buf][tt][gi][0], sz_cur[buf][tt][gi][1]);
#pragma unroll
            for (int mt = 0; mt < kMTiles; ++mt) mma_m16n8k16<T>(acc[tt][mt], frag, b[mt][0], b[mt][1]);
          }
        }
      }
    } else if constexpr (kTileMajor) {
      // One tile after another, each group's sums started from zero in the
      // mma itself: one group's partial sums live at a time (kMTiles x 4
      // registers instead of kTiles x kMTiles x 4), for one ldmatrix per
      // tile and k16 instead of one per k16.
      float asum[kGroupsPerChunk][kMTiles][4];  // sum A per group (every tile's)
#pragma unroll
      for (int tt = 0; tt < kTiles; ++tt) {
        // The same copy of A, at an offset ptxas cannot see is zero: else
        // it keeps the chunk's B fragments from the first tile for the
        // others (kMTiles x 16 registers), and spills.
        const uint8_t* const tile_a = ld_buf + tt * opaque_zero;
        float part[kMTiles][4];
#pragma unroll
        for (int i = 0; i < kSteps; ++i) {
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const int k16 = i * 4 + j;
            const int gi = k16 / kK16PerGroup;
            const bool first = k16 % kK16PerGroup == 0;
            uint32_t b[kMTiles][2];
            b_fragments(i, j, b, tile_a);
            uint32_t frag[4];
            folded_word(tt, i, j, frag);
#pragma unroll
            for (int mt = 0; mt < kMTiles; ++mt) {
              if (tt == 0) mma_group(asum[gi][mt], ones, b[mt][0], b[mt][1], first);
              mma_group(part[mt], frag, b[mt][0], b[mt][1], first);
            }
            if ((k16 + 1) % kK16PerGroup == 0) fold(tt, gi, part, asum[gi]);
          }
        }
      }
    } else {
      float part[kTiles][kMTiles][4];  // sum A * w over the current group (w as folded_word gives it)
      float asum[kMTiles][4];          // sum A over the current group (every tile's)
#pragma unroll
      for (int i = 0; i < kSteps; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int k16 = i * 4 + j;
          const bool first = k16 % kK16PerGroup == 0;
          uint32_t b[kMTiles][2];
          b_fragments(i, j, b);
#pragma unroll
          for (int mt = 0; mt < kMTiles; ++mt) {
            const uint32_t b0 = b[mt][0], b1 = b[mt][1];
            mma_group(asum[mt], ones, b0, b1, first);
#pragma unroll
            for (int tt = 0; tt < kTiles; ++tt) {
              uint32_t frag[4];
              folded_word(tt, i, j, frag);
              mma_group(part[tt][mt], frag, b0, b1, first);
            }
          }
          if ((k16 + 1) % kK16PerGroup == 0) {
#pragma unroll
            for (int tt = 0; tt < kTiles; ++tt) fold(tt, k16 / kK16PerGroup, part[tt], asum);
          }
        }
      }
    }
  };

  // The loops run the whole chunks first, then the edge ones (a warp's
  // last chunks at most); a_at moves with the chunk in the first.
  auto next_a = [&] {
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) a_at[mt] += kWarps * kChunkK;
  };
  int chunk = warp;
  a_at_chunk(chunk);
  if constexpr (kBuffers == 1) {
    auto one_chunk = [&](int chunk, auto whole, auto rows_whole) {
      if constexpr (!kStagedA || kWeightsFirst) load_chunk(chunk, 0, whole);
      if constexpr (kStagedA) {
        __syncwarp();  // every lane's ldmatrix of the last chunk is done
        stage_a(chunk, 0, whole, rows_whole);
        if constexpr (!kWeightsFirst) load_chunk(chunk, 0, whole);
        cp_async_wait<0>();
        __syncwarp();
      }
      compute_chunk(chunk, 0, whole);
    };
    if constexpr (kStagedA) {  // (a_at is direct A's)
      if (m >= kRowsA) {
        for (; chunk < whole_chunks; chunk += kWarps) one_chunk(chunk, std::true_type{}, std::true_type{});
      }
    }
    for (; chunk < whole_chunks; chunk += kWarps, next_a()) one_chunk(chunk, std::true_type{}, std::false_type{});
    for (; chunk < chunks; chunk += kWarps) {
      a_at_chunk(chunk);
      one_chunk(chunk, std::false_type{}, std::false_type{});
    }
  } else {
    // Two buffers: the loads of the warp's next chunk (weights, pairs and
    // staged A) are issued before this chunk's math, so that a warp keeps
    // a chunk in flight while it computes. The loops are unrolled by two so
    // that the buffers' registers are named by constants.
    auto issue = [&](int chunk, int buf, auto whole) {
      if (chunk < chunks) {
        load_chunk(chunk, buf, whole);
        if constexpr (kStagedA) stage_a(chunk, buf, whole, std::false_type{});
      } else if constexpr (kStagedA) {
        cp_async_commit();  // an empty group: one group a chunk
      }
    };
    // Computes `chunk` from buf, with the one after it on its way.
    auto run = [&](int chunk, int buf, auto whole_next, auto whole) {
      issue(chunk + kWarps, 1 - buf, whole_next);
      if constexpr (kStagedA) {
        cp_async_wait<1>();  // this chunk's A
        __syncwarp();
      }
      compute_chunk(chunk, buf, whole);
      if constexpr (kStagedA) __syncwarp();  // every lane's ldmatrix is done before buf is refilled
    };
    constexpr std::true_type kWhole{};
    constexpr std::false_type kEdge{};
    issue(chunk, 0, kEdge);
    for (; chunk + 2 * kWarps < whole_chunks; chunk += 2 * kWarps) {
      run(chunk, 0, kWhole, kWhole);
      next_a();
      run(chunk + kWarps, 1, kWhole, kWhole);
      next_a();
    }
    for (; chunk < chunks; chunk += 2 * kWarps) {
      a_at_chunk(chunk);
      run(chunk, 0, kEdge, kEdge);
      if (chunk + kWarps >= chunks) break;
      a_at_chunk(chunk + kWarps);
      run(chunk + kWarps, 1, kEdge, kEdge);
    }
    if constexpr (kStagedA) cp_async_wait<0>();
  }

  // This block's loads are issued: the next kernel in the stream may start
  // its blocks (they wait for this one before touching A or C).
  grid_dependents_launch();

  // Sum the warps' fragments: [warp][tile][mt][e][lane] in shared memory.
  // More than 8 warps: the upper half first hands its fragments to the
  // lower half, so that the buffer stays within 8 warps' (32 KB at most).
  constexpr int kFrags = kTiles * kMTiles * 4;
  constexpr int kRedWarps = kWarps > 8 ? (kWarps + 1) / 2 : kWarps;
  __shared__ float red[kRedWarps][kFrags][32];
  auto for_each_fragment = [&](auto&& f) {
#pragma unroll
    for (int tt = 0; tt < kTiles; ++tt) {
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) f(acc[tt][mt][e], (tt * kMTiles + mt) * 4 + e);
      }
    }
  };
  if constexpr (kRedWarps < kWarps) {
    if (warp >= kRedWarps) for_each_fragment([&](float& v, int frag) { red[warp - kRedWarps][frag][lane] = v; });
    __syncthreads();
    if (warp + kRedWarps < kWarps) for_each_fragment([&](float& v, int frag) { v += red[warp][frag][lane]; });
    __syncthreads();
  }
  if (warp < kRedWarps) for_each_fragment([&](float& v, int frag) { red[warp][frag][lane] = v; });
  __syncthreads();
  // Thread i of the block owns output fragment element i.
  for (int idx = threadIdx.x; idx < kFrags * 32; idx += kWarps * 32) {
    const int frag = idx / 32;
    const int l = idx % 32;
    const int tt = frag / (kMTiles * 4);
    const int mt = (frag / 4) % kMTiles;
    const int e = frag % 4;
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kRedWarps; ++w) sum += red[w][frag][l];
    const int row = (tile0 + tt) * 16 + (l >> 2) + (e >= 2 ? 8 : 0);
    const int col = mt * 8 + 2 * (l & 3) + (e & 1);
    if (row < n && col < m) c[int64_t(col) * ldc + row] = from_float<T>(sum);
  }
}

// Dynamic shared memory of gemv_mma with staged A: each warp's chunk of A.
template <typename T, int kMTiles, int kWarps, int kSteps>
constexpr int gemv_staged_a_bytes() {
  return kWarps * kMTiles * 8 * kSteps * 64 * int(sizeof(T));
}

// Host side: one gemv_mma launch, one block per kTiles weight tiles. With
// programmatic dependent launch where the next call's blocks cannot pile up
// on some SMs while others idle: one block fills an SM, or the grid already
// puts as many blocks on some SM as fit there (more than per_sm - 1 per SM
// on average), so that no SM can take more of the next call than the
// scheduler would give it anyway (v21: 256 blocks of 12 warps, 2 per SM).
// Where a grid leaves whole slots free on every SM (256 blocks of 8 warps,
// 3 per SM) the next call's blocks took them unevenly and ran up to 1.24x
// slower (v9).
template <typename T, int kGroupSize, int kMTiles, int kTiles, int kWarps, int kSteps, bool kStagedA, bool kScaledW,
          int kMinBlocks, int kBuffers = 1>
void launch_gemv_mma(const T* a, int64_t lda, const uint4* packed, const T* sz, T* c, int64_t ldc, int m, int n,
                     int k, cudaStream_t stream) {
  auto kernel =
      gemv_mma_kernel<T, kGroupSize, kMTiles, kTiles, kWarps, kSteps, kStagedA, kScaledW, kMinBlocks, kBuffers>;
  constexpr int kSmem = kStagedA ? kBuffers * gemv_staged_a_bytes<T, kMTiles, kWarps, kSteps>() : 0;
  static std::atomic<int> occupancy[kMaxCachedDevices] = {};
  static std::atomic<int> pdl_cache[kMaxCachedDevices] = {};
  const int per_sm = resident_blocks_per_sm(occupancy, kernel, kWarps * 32, kSmem);  // allows kSmem too
  const int blocks = ((n + 15) / 16 + kTiles - 1) / kTiles;
  const bool pdl = pdl_allowed(pdl_cache, kernel) && (per_sm == 1 || blocks > (per_sm - 1) * sm_count());
  launch_kernel(kernel, blocks, kWarps * 32, kSmem, stream, pdl, 1, "gemv_mma_kernel", a, lda, packed, sz, c, ldc, m, n,
                k, pdl);
}

}  // namespace int4mm::detail::cuda
