// AMX-BF16 kernel of the CPU backend, from M = 2 on, 1..8 rows per call
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
// Per group of one tile (16 columns x group_size k):
//   1. Each 16-byte chunk (2 k x 16 columns) becomes one 64-byte row of a
//      VNNI-layout B tile, [bf16(q_even - 8) | bf16(q_odd - 8) << 16] per
//      column: vpmovzxbd, shift, or, VPERMW (a 32-word table) = 4 instructions;
//      16 chunks (32 k) make one B tile: rows = k pairs, 64 bytes = 16 columns.
//   2. Per 32 k: tileloadd A (split * rows x 32 bf16, stride lda), tileloadd B,
//      TDPBF16PS into C (split * rows x 16 float32).
//   3. C is stored and folded: out += s * C + zero * sum(a)  (exact weights
//      q - 8, so no z' and no bias term).
// TDPBF16PS accumulates in float32 (round to nearest even, denormal inputs
// and outputs flushed).
// Tile registers: tmm0 = C, tmm1 = A, tmm2 = B; a second sub-block of rows
// (float32: 8 rows = 5 + 3, as 3 * 8 > 16 tile rows) uses tmm3 = C, tmm4 = A.
// Configured once per call (the rows vary), released at the end.
// Limitations: 1. width 16 only (tail tiles go to the scalar kernel).
//   2. group_size a multiple of 32, at most 256 (every supported one).
//   3. Activations (or their split parts) below 2^-126 are flushed to zero:
//      float32 activations below ~2^-110 lose their low bits.
//   4. float32 (3 bf16 rows per row, two sub-blocks at 8 rows) reaches only
//      2.1x the M = 1 time at M = 8 and ties the FMA kernel at large M; what
//      bounds it is not yet measured (alternating two C tiles did not help).
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
  const int rows = t.rows, split = t.split;
  // Rows of A per sub-block: split * rows must fit one tile (16 rows); float32
  // (split 3) takes 8 rows as 5 + 3, each sub-block with its own A and C tile.
  const int sub_rows = std::min(rows, kTileRows / split);
  const int subs = (rows + sub_rows - 1) / sub_rows;
  TileConfig config{};
  config.palette_id = 1;
  for (int b = 0; b < subs; ++b) {
    const int tile_rows = split * std::min(sub_rows, rows - b * sub_rows);
    config.rows[0 + 3 * b] = uint8_t(tile_rows), config.colsb[0 + 3 * b] = 64;  // C: tmm0, tmm3
    config.rows[1 + 3 * b] = uint8_t(tile_rows), config.colsb[1 + 3 * b] = 64;  // A: tmm1, tmm4
  }
  config.rows[2] = uint8_t(kPairsPerTile), config.colsb[2] = 64;  // B: tmm2
  _tile_loadconfig(&config);

  const auto* a = static_cast<const uint16_t*>(t.a);
  const int64_t a_stride = t.lda * 2;  // bytes between bfloat16 rows
  const __m512i table = nibble_table();
  // B tiles of one group (group_size / 2 rows of 64 bytes: 8 KB at 256) and C.
  alignas(64) uint8_t b_tiles[256 / 2 * 64];
  alignas(64) float c[2 * kTileRows * kTile];
  const int64_t sz_size = dtype_size(t.sz_dtype);

  __m512 out[kMaxRows];
  for (int r = 0; r < rows; ++r) {
    out[r] = t.accumulate ? _mm512_loadu_ps(t.c + r * t.ldc) : _mm512_setzero_ps();
  }
  const uint8_t* w = t.w;
  const int64_t pairs = t.group_size / 2;
  for (int64_t g = t.k0 / t.group_size; g < t.k1 / t.group_size; ++g) {
    prefetch_next_tile_scales(t, g, sz_size);
    // 1. Unpack the group into B tiles: chunk i is row i (k pair i). A lane of
    //    v holds (q_odd << 4 | q_even); v | v << 12 puts q_even in the index
    //    bits (0..4, bit 4 ignored by the table's period) of word 0 and q_odd
    //    in those of word 1; VPERMW looks both up.
    for (int64_t i = 0; i < pairs; i += 4, w += 64) {
      prefetch_weights(w);
      for (int j = 0; j < 4; ++j) {
        const __m512i v =
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 16 * j)));
        const __m512i x = _mm512_or_si512(v, _mm512_slli_epi32(v, 12));
        _mm512_store_si512(b_tiles + (i + j) * 64, _mm512_permutexvar_epi16(x, table));
      }
    }
    // 2. C = A[:, group] @ B, per sub-block of rows.
    const int64_t k_group = g * t.group_size;
    _tile_zero(0);
    if (subs > 1) _tile_zero(3);
    for (int64_t p = 0; p < pairs; p += kPairsPerTile) {
      _tile_loadd(2, b_tiles + p * 64, 64);
      _tile_loadd(1, a + k_group + 2 * p, a_stride);
      _tile_dpbf16ps(0, 1, 2);
      if (subs > 1) {
        _tile_loadd(4, a + split * sub_rows * t.lda + k_group + 2 * p, a_stride);
        _tile_dpbf16ps(3, 4, 2);
      }
    }
    _tile_stored(0, c, kTile * 4);
    if (subs > 1) _tile_stored(3, c + split * sub_rows * kTile, kTile * 4);
    // 3. Fold: out += s * sum(a * (q - 8)) + zero * sum(a), the split terms of
    //    a row added smallest first.
    __m512 s, z;
    load_scales_and_zeros(t.sz, t.sz_dtype, g * t.n * 2, s, z);
    for (int r = 0; r < rows; ++r) {
      __m512 dot = _mm512_load_ps(c + (r * split + split - 1) * kTile);
      for (int h = split - 2; h >= 0; --h) {
        dot = _mm512_add_ps(dot, _mm512_load_ps(c + (r * split + h) * kTile));
      }
      out[r] = _mm512_fmadd_ps(s, dot, out[r]);
      out[r] = _mm512_fmadd_ps(z, _mm512_set1_ps(t.sum_a[r * t.ld_sum + g]), out[r]);
    }
  }
  for (int r = 0; r < rows; ++r) _mm512_storeu_ps(t.c + r * t.ldc, out[r]);
  _tile_release();
}

}  // namespace int4mm::detail::cpu::amx
