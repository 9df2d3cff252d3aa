// The CPU backend's packed layout and the interface of its per-ISA kernels.
//
// Packed layout (one layout for every ISA, so forced-ISA runs share a packing).
// Columns n are cut into tiles of kTile = 16 (one zmm of float lanes); the
// last tile may be narrower (width = n % 16). Each tile is one contiguous
// stream over k, in lines of 8 k; a line is 4 chunks of `width` bytes:
//
//   tile t (columns 16t .. 16t+width-1), line l (k = 8l .. 8l+7):
//     chunk j (0..3), byte c (0..width-1):
//        low nibble  = q[16t + c][8l + 2j]
//        high nibble = q[16t + c][8l + 2j + 1]
//
//   full tile:  | line 0: c0..c15 (k0,k1) | c0..c15 (k2,k3) | (k4,k5) | (k6,k7) | line 1 ...
//               \______ 64 bytes = one cache line = 128 weights ______________/
//
// So one 16-byte load, zero-extended to 16 int32 lanes, holds two k for 16
// columns: (v & 15) is k even, (v >> 4) is k odd, already in column order --
// no shuffle per weight. Tile t starts at byte 8*k*t; the total is exactly
// n*k/2 bytes (no padding), which lets packed_shape be the wire shape [n, k/2].
// scales_and_zeros stay the caller's [k/g, n, 2] array, read at matmul time:
// 16 columns' (scale, zero) pairs are 32 consecutive values.
//
// A kernel computes, for one tile, up to kMaxRows rows of A and a group-
// aligned k range, with the per-group algebra
//   sum_{k in g} a[k] * (q[k] * s + z')  =  s * sum(a * q) + z' * sum(a),
//   z' = zero - 8 * scale,
// where sum(a) per row and group is computed once per call (sum_a) and
// shared by every column.
#pragma once

#include <cstdint>
#include <type_traits>

#include "int4mm/int4mm.h"

namespace int4mm::detail::cpu {

constexpr int kTile = 16;     // columns per tile
constexpr int kMaxRows = 8;   // rows of A per kernel call

// Byte offset of tile t in the packed stream of an n x k weight.
inline int64_t tile_offset(int64_t t, int64_t k) { return t * kTile * (k / 2); }

struct TileArgs {
  const uint8_t* w;      // the tile's stream at k0 (lines of 4 * width bytes)
  int width;             // columns in this tile, 1..16
  const void* a;         // row 0 of A at k = 0: float32 (or bfloat16 for the bf16 kernel)
  int64_t lda;           // elements
  const float* sum_a;    // [rows][ld_sum]: sum of a over each group, at group 0
  int64_t ld_sum;
  const void* sz;        // scales_and_zeros at group 0, column 16t: element (g * n + c) * 2
  int64_t n;             // columns of the whole weight (the stride of sz's groups)
  DType sz_dtype;
  float* c;              // [rows][ldc] float32; 16 columns are written (scratch is padded)
  int64_t ldc;
  int64_t k0, k1;        // group-aligned range of k
  int64_t group_size;
  int rows;              // 1..kMaxRows
  bool accumulate;       // add to c instead of overwriting it
  int split = 1;         // AMX: bfloat16 rows per row of A (a = sum of them; cpu_backend.cpp)
  int tiles = 1;         // AMX: adjacent full tiles per call, 1 or 2 (c, sz and the
                         // stream of the second: + kTile columns, + w_tile_stride bytes)
  int64_t w_tile_stride = 0;  // bytes from one tile's stream to the next (kTile * k / 2)
};

// Software prefetch (all ISAs; __builtin_prefetch is a no-op where absent).
// One core keeps only ~16 L1 misses in flight, so a thread streaming at the
// speed of its arithmetic would see a fraction of DRAM bandwidth; measured in
// docs/cpu.md. Two streams are prefetched:
//   weights   kPrefetchAhead bytes ahead of the line being unpacked (one
//             prefetch per 64-byte line; runs on into the next tile, which
//             follows in memory).
//   scales    the (scale, zero) line of each group lives in its own row of
//             scales_and_zeros (row stride n * 2 elements), one new page per
//             group, which the hardware prefetchers never fetch ahead: while
//             tile t works on group g, the line of group g for tile t + 1 is
//             fetched, a whole tile (~64 KB of weights) ahead.
constexpr int64_t kPrefetchAhead = 3072;

inline void prefetch_weights(const uint8_t* line) {
  __builtin_prefetch(line + kPrefetchAhead, 0, 3);
}

// esize: bytes per element of scales_and_zeros.
inline void prefetch_next_tile_scales(const TileArgs& t, int64_t g, int64_t esize) {
  const char* p = static_cast<const char*>(t.sz) + (g * t.n * 2 + 2 * kTile) * esize;
  __builtin_prefetch(p, 0, 3);
  __builtin_prefetch(p + 2 * kTile * esize - 1, 0, 3);
}

// Calls f(std::integral_constant<int, R>{}) with R = min(rows, kMax), rows >= 1:
// a kernel's runtime row count becomes a compile-time one (one instantiation
// per R, as the per-ISA mm_tile need for their register arrays). In an
// anonymous namespace so that each per-ISA translation unit keeps its own copy.
namespace {
template <int kMax, typename F>
inline void dispatch_rows(int rows, F&& f) {
  if constexpr (kMax > 1) {
    if (rows < kMax) return dispatch_rows<kMax - 1>(rows, f);
  }
  f(std::integral_constant<int, kMax>{});
}
}  // namespace

namespace scalar {
void mm_tile(const TileArgs& t);  // any width
}
namespace avx2 {
void mm_tile(const TileArgs& t);  // width 16 (tails go to scalar)
}
namespace avx512 {
void mm_tile(const TileArgs& t);  // width 16
}
namespace avx512_bf16 {
void mm_tile(const TileArgs& t);  // width 16, a is bfloat16
}
namespace amx {
void mm_tile(const TileArgs& t);  // width 16, a is bfloat16, group_size 32..256
}

}  // namespace int4mm::detail::cpu
