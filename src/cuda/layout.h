// The CUDA packed layout: where each nibble of q lands. Host and device code
// (the packing kernels, the host-side packer the tests compare against, and
// the GEMV kernels) all take bit positions from here and nowhere else.
//
// The GEMV feeds weights to mma.sync.m16n8k16 as the 16-row A operand, so the
// layout is the A fragment itself. N is padded to 16, K to 64 (pad nibbles
// are 0); the packed tensor is uint8 [round_up(N, 16), round_up(K, 64) / 2]:
//
//   tile (n / 16) ─┬─ step (k / 64) ─┬─ lane 0..31 ─┬─ word 0..3 (uint32) = k16 sub-tile
//                  │  512 bytes each │  16 bytes     │  8 nibbles
//   tiles are contiguous over K, so one warp streams a tile with one 16-byte
//   load per lane per 64 k: 512 contiguous bytes per warp-instruction.
//
// In word w of lane l (g = l / 4, t = l % 4), k0 = step*64 + w*16, the
// nibbles are the mma A-fragment elements a0..a7 reordered so that a single
// mask picks up a pair (element i and i+4 share a 16-bit half):
//
//   nibble:  0        1          2          3           4          5          6           7
//   holds:   a0       a2         a4         a6          a1         a3         a5          a7
//   row:     g        g+8        g          g+8         g          g+8        g           g+8
//   k:       2t       2t         2t+8       2t+8        2t+1       2t+1       2t+9        2t+9
//
//   (x >> 4*i) & 0x000f000f  =  the pair (a_{2i}, a_{2i+1}) as two 16-bit halves, i = 0..3,
//   i.e. A-fragment register i of m16n8k16.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define INT4MM_HD __host__ __device__ __forceinline__
#else
#define INT4MM_HD inline
#endif

namespace int4mm::cuda_layout {

constexpr int64_t kTileN = 16;        // rows of a tile (the mma M dimension)
constexpr int64_t kStepK = 64;        // k per 16-byte lane load
constexpr int64_t kStepBytes = 512;   // 32 lanes x 16 bytes
constexpr int kWordsPerLane = 4;      // one uint32 per k16 sub-tile

INT4MM_HD int64_t padded_n(int64_t n) { return (n + kTileN - 1) / kTileN * kTileN; }
INT4MM_HD int64_t padded_k(int64_t k) { return (k + kStepK - 1) / kStepK * kStepK; }

// Where nibble `nibble` of word `word` of `lane` sits in the (row, k) plane,
// relative to the tile's first row and the step's first k.
struct NibbleSource {
  int row;
  int k;
};

INT4MM_HD NibbleSource nibble_source(int lane, int word, int nibble) {
  const int g = lane >> 2;
  const int t = lane & 3;
  const int pair = nibble & 3;     // which A-fragment register
  const int second = nibble >> 2;  // 0: a_{2i}, 1: a_{2i+1}
  // Registers 0..3 hold (row g, k 2t), (row g+8, k 2t), (row g, k 2t+8), (row g+8, k 2t+8).
  const int row = g + ((pair & 1) ? 8 : 0);
  const int k = word * 16 + 2 * t + ((pair & 2) ? 8 : 0) + second;
  return {row, k};
}

// The inverse: which (lane, word, nibble) holds (row, k) of a tile and step.
struct NibbleLocation {
  int lane;
  int word;
  int nibble;
};

INT4MM_HD NibbleLocation nibble_location(int row, int k) {
  const int word = k >> 4;
  const int kk = k & 15;
  const int t = (kk & 7) >> 1;
  const int pair = (row >> 3) | ((kk >> 3) << 1);
  return {(row & 7) * 4 + t, word, pair + 4 * (kk & 1)};
}

// Byte offset of (tile, step, lane, word) in the packed tensor.
INT4MM_HD int64_t word_offset(int64_t tile, int64_t step, int64_t steps, int lane, int word) {
  return (tile * steps + step) * kStepBytes + lane * 16 + word * 4;
}

}  // namespace int4mm::cuda_layout
