// AMX-BF16 kernel of the CPU backend, for every M, 1..8 rows per call
// (large M: the driver's k-blocked loop). Compiled with the AVX-512 flags plus
// -mavx512bf16 -mamx-tile -mamx-bf16; called only when CPUID has AMX-BF16 and
// Linux granted the tile data state (cpu_backend.cpp).
//
// Why: at M = 8 the float FMA kernel needs 64 FMAs per 64-byte line (one per
// weight and row) and is bound by arithmetic at ~2x the M = 1 time;
// VDPBF16PS was measured slower still (docs/cpu.md). One TDPBF16PS does
// 16 x 16 x 32 multiply-adds, so the rows of A cost almost nothing and the
// kernel is left with the per-line unpacking of the M = 1 kernel.
//
// A is bfloat16: the caller's rows as they are, or (t.split = 2, 3) float16 /
// float32 rows that the driver split exactly into 2 / 3 bfloat16 rows
// (a = hi + mid + lo), stored one after the other; their partial sums are
// added at the fold. Every product bf16 x (q - 8) is exact in float32.
//
// Per group of one or two adjacent tiles (t.tiles; 16 or 32 columns x group_size k):
//   1. Each 16-byte chunk (2 k x 16 columns) becomes one 64-byte row of a
//      VNNI-layout B tile, [bf16(q_even - 8) | bf16(q_odd - 8) << 16] per
//      column: vpmovzxbd, shift, or, VPERMW (a 32-word table) = 4 instructions;
//      16 chunks (32 k) make one B tile: rows = k pairs, 64 bytes = 16 columns.
//   2. Per 32 k: tileloadd B of each tile, tileloadd A (split * rows x 32 bf16,
//      stride lda) ONCE for both tiles, TDPBF16PS into each tile's C
//      (split * rows x 16 float32). A comes from L2 (24 rows x 8192 bf16 =
//      384 KB at float32 M = 8), and re-reading it for every 16 columns was
//      what bound M = 8 (time grew with the bf16 rows: bf16 8.2, fp16 10.5,
//      fp32 14.0 ms); two tiles per A load: 7.1, 8.5, 9.2-10.2 ms (docs/cpu.md v8).
//   3. C is stored and folded: out += s * C + zero * sum(a)  (exact weights
//      q - 8, so no z' and no bias term).
// TDPBF16PS accumulates in float32 (round to nearest even, denormal inputs
// and outputs flushed).
// Tile registers: C of sub-block b and column tile c = tmm(2b + c), A of
// sub-block b = tmm(4 + b), B of column tile c = tmm(6 + c); a second
// sub-block of rows exists for float32 (8 rows = 5 + 3, as 3 * 8 > 16 tile
// rows). Configured once per call (the rows vary), released at the end.
// Limitations: 1. width 16 only (tail tiles go to the scalar kernel).
//   2. group_size a multiple of 32, at most 256 (every supported one).
//   3. Activations (or their split parts) below 2^-126 are flushed to zero:
//      float32 activations below ~2^-110 lose their low bits.
//   4. float32 needs two sub-blocks of rows (24 bf16 rows per 8 rows of A):
//      M = 8 is 1.3-1.5x the M = 1 time (bf16 1.1x), large M 0.99x SGEMM.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "cpu/avx512_scales.h"
#include "cpu/cpu_kernels.h"

namespace int4mm::detail::cpu::amx {
namespace {

// The 64-byte operand of LDTILECFG (palette 1).
struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];  // bytes per row of each tile register
  uint8_t rows[16];    // rows of each tile register
};
static_assert(sizeof(TileConfig) == 64, "LDTILECFG reads exactly 64 bytes");

constexpr int kPairsPerTile = 16;  // rows of a B tile: 16 k pairs = 32 k
constexpr int kTileRows = 16;      // rows of an A or C tile register

// Word i (0..31) = bfloat16(i % 16 - 8): the VPERMW table that turns a nibble
// into its weight q - 8, exactly (integers up to 8 need 4 significant bits).
inline __m512i nibble_table() {
  alignas(64) uint16_t table[32];
  for (int i = 0; i < 32; ++i) {
    const float value = float(i % 16 - 8);
    uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    table[i] = uint16_t(bits >> 16);
  }
  return _mm512_load_si512(table);
}

}  // namespace

void mm_tile(const TileArgs& t) {
  const int rows = t.rows, split = t.split, tiles = t.tiles;
  // Rows of A per sub-block: split * rows must fit one tile (16 rows); float32
  // (split 3) takes 8 rows as 5 + 3, each sub-block with its own A tile.
  const int sub_rows = std::min(rows, kTileRows / split);
  const int subs = (rows + sub_rows - 1) / sub_rows;
  // Tile registers: C of sub-block b and column tile c: tmm(2b + c); A of
  // sub-block b: tmm(4 + b); B of column tile c: tmm(6 + c).
  TileConfig config{};
  config.palette_id = 1;
  for (int b = 0; b < subs; ++b) {
    const int tile_rows = split * std::min(sub_rows, rows - b * sub_rows);
    for (int c = 0; c < tiles; ++c) {
      config.rows[2 * b + c] = uint8_t(tile_rows), config.colsb[2 * b + c] = 64;
    }
    config.rows[4 + b] = uint8_t(tile_rows), config.colsb[4 + b] = 64;
  }
  for (int c = 0; c < tiles; ++c) config.rows[6 + c] = uint8_t(kPairsPerTile), config.colsb[6 + c] = 64;
  _tile_loadconfig(&config);

  const auto* a = static_cast<const uint16_t*>(t.a);
  const int64_t a_stride = t.lda * 2;  // bytes between bfloat16 rows
  const __m512i table = nibble_table();
  // B tiles of one group per column tile (group_size / 2 rows of 64 bytes:
  // 8 KB at 256) and C (split * rows <= 24 rows of 16 floats).
  alignas(64) uint8_t b_tiles[2][256 / 2 * 64];
  alignas(64) float c[2 * kTileRows * kTile];
  const int64_t sz_size = dtype_size(t.sz_dtype);

  __m512 out[2][kMaxRows];
  for (int ct = 0; ct < tiles; ++ct) {
    for (int r = 0; r < rows; ++r) {
      out[ct][r] = t.accumulate ? _mm512_loadu_ps(t.c + r * t.ldc + ct * kTile) : _mm512_setzero_ps();
    }
  }
  const uint8_t* w = t.w;
  const int64_t pairs = t.group_size / 2;
  for (int64_t g = t.k0 / t.group_size; g < t.k1 / t.group_size; ++g) {
    // The (scale, zero) lines of the next call's tiles.
    const char* next_sz = static_cast<const char*>(t.sz) + (g * t.n * 2 + 2 * kTile * tiles) * sz_size;
    for (int ct = 0; ct < tiles; ++ct) {
      __builtin_prefetch(next_sz + ct * 2 * kTile * sz_size, 0, 3);
      __builtin_prefetch(next_sz + (ct + 1) * 2 * kTile * sz_size - 1, 0, 3);
    }
    // 1. Unpack the group into B tiles: chunk i is row i (k pair i). A lane of
    //    v holds (q_odd << 4 | q_even); v | v << 12 puts q_even in the index
    //    bits (0..4, bit 4 ignored by the table's period) of word 0 and q_odd
    //    in those of word 1; VPERMW looks both up.
    for (int ct = 0; ct < tiles; ++ct) {
      const uint8_t* wt = w + ct * t.w_tile_stride;
      for (int64_t i = 0; i < pairs; i += 4, wt += 64) {
        prefetch_weights(wt);
        for (int j = 0; j < 4; ++j) {
          const __m512i v =
              _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wt + 16 * j)));
          const __m512i x = _mm512_or_si512(v, _mm512_slli_epi32(v, 12));
          _mm512_store_si512(b_tiles[ct] + (i + j) * 64, _mm512_permutexvar_epi16(x, table));
        }
      }
    }
    w += pairs * 16;  // 16 bytes per k pair
    // 2. C = A[:, group] @ B, per sub-block of rows and column tile: each A
    //    tile loaded once feeds both column tiles.
    const int64_t k_group = g * t.group_size;
    const uint16_t* a_sub1 = a + split * sub_rows * t.lda;
    _tile_zero(0);
    if (tiles > 1) _tile_zero(1);
    if (subs > 1) {
      _tile_zero(2);
      if (tiles > 1) _tile_zero(3);
    }
    for (int64_t p = 0; p < pairs; p += kPairsPerTile) {
      _tile_loadd(6, b_tiles[0] + p * 64, 64);
      if (tiles > 1) _tile_loadd(7, b_tiles[1] + p * 64, 64);
      _tile_loadd(4, a + k_group + 2 * p, a_stride);
      _tile_dpbf16ps(0, 4, 6);
      if (tiles > 1) _tile_dpbf16ps(1, 4, 7);
      if (subs > 1) {
        _tile_loadd(5, a_sub1 + k_group + 2 * p, a_stride);
        _tile_dpbf16ps(2, 5, 6);
        if (tiles > 1) _tile_dpbf16ps(3, 5, 7);
      }
    }
    // 3. Fold, per column tile: out += s * sum(a * (q - 8)) + zero * sum(a),
    //    the split terms of a row added smallest first.
    for (int ct = 0; ct < tiles; ++ct) {
      if (ct == 0) {
        _tile_stored(0, c, kTile * 4);
        if (subs > 1) _tile_stored(2, c + split * sub_rows * kTile, kTile * 4);
      } else {
        _tile_stored(1, c, kTile * 4);
        if (subs > 1) _tile_stored(3, c + split * sub_rows * kTile, kTile * 4);
      }
      __m512 s, z;
      load_scales_and_zeros(t.sz, t.sz_dtype, g * t.n * 2 + ct * 2 * kTile, s, z);
      for (int r = 0; r < rows; ++r) {
        __m512 dot = _mm512_load_ps(c + (r * split + split - 1) * kTile);
        for (int h = split - 2; h >= 0; --h) {
          dot = _mm512_add_ps(dot, _mm512_load_ps(c + (r * split + h) * kTile));
        }
        out[ct][r] = _mm512_fmadd_ps(s, dot, out[ct][r]);
        out[ct][r] = _mm512_fmadd_ps(z, _mm512_set1_ps(t.sum_a[r * t.ld_sum + g]), out[ct][r]);
      }
    }
  }
  for (int ct = 0; ct < tiles; ++ct) {
    for (int r = 0; r < rows; ++r) _mm512_storeu_ps(t.c + r * t.ldc + ct * kTile, out[ct][r]);
  }
  _tile_release();
}

}  // namespace int4mm::detail::cpu::amx
