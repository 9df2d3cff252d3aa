// AMX-BF16 kernel of the CPU backend, for bfloat16 activations from M = 2 on,
// 1..8 rows per call (large M: the driver's k-blocked loop; compiled with the AVX-512 flags plus -mavx512bf16 -mamx-tile -mamx-bf16;
// called only when CPUID has AMX-BF16 and Linux granted the tile data state).
//
// Why: at M = 8 the float FMA kernel needs 64 FMAs per 64-byte line (one per
// weight and row) and is bound by arithmetic at ~2x the M = 1 time;
// VDPBF16PS was measured slower still (docs/cpu.md). One TDPBF16PS does
// 16 x 16 x 32 multiply-adds; the rows of A cost almost nothing, and the kernel
// is left with the same per-line unpacking as the M = 1 kernel.
//
// Per group of one tile (16 columns x group_size k):
//   1. Each 16-byte chunk (2 k x 16 columns) becomes one 64-byte row of a
//      VNNI-layout B tile, [bf16(128 + q_even) | bf16(128 + q_odd) << 16] per
//      column, with the same three instructions as kernels_avx512_bf16.cpp;
//      16 chunks (32 k) make one B tile: rows = k pairs, 64 bytes = 16 columns.
//   2. Per 32 k: tileloadd A (rows x 32 bf16, straight from the caller's A,
//      stride lda), tileloadd B, TDPBF16PS into C (rows x 16 float32).
//   3. C is stored and folded like the other kernels:
//      out += s * C + (z - 136 s) * sum(a)   (z - 136 s = z' - 128 s).
// TDPBF16PS accumulates in float32 (round to nearest even, denormals
// flushed), as VDPBF16PS does: the same accuracy as the M = 1 BF16 kernel.
// Tile registers: tmm0 = C (rows x 64 B), tmm1 = A (rows x 64 B), tmm2 = B
// (16 x 64 B); configured once per call (the rows vary), released at the end.
// Limitations: 1. width 16 only (tail tiles go to the scalar kernel).
//   2. group_size must be a multiple of 32 (every supported one is).
//   3. Activations below 2^-126 are flushed to zero.
#include <immintrin.h>

#include <cstring>

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

inline void load_scales(const void* sz, int64_t offset, __m512& s, __m512& z) {
  const uint16_t* p = static_cast<const uint16_t*>(sz) + offset;
  const __m256i lo16 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i hi16 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16));
  const __m512 lo = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(lo16), 16));
  const __m512 hi = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(hi16), 16));
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  s = _mm512_permutex2var_ps(lo, even, hi);
  z = _mm512_permutex2var_ps(lo, odd, hi);
}

}  // namespace

void mm_tile(const TileArgs& t) {
  const int rows = t.rows;
  TileConfig config{};
  config.palette_id = 1;
  config.rows[0] = uint8_t(rows), config.colsb[0] = 64;                 // C
  config.rows[1] = uint8_t(rows), config.colsb[1] = 64;                 // A
  config.rows[2] = uint8_t(kPairsPerTile), config.colsb[2] = 64;        // B
  _tile_loadconfig(&config);

  const auto* a = static_cast<const uint16_t*>(t.a);
  const __m512i bias = _mm512_set1_epi32(0x43004300);
  const __m512i keep = _mm512_set1_epi32(0x430F430F);
  // B tiles of one group (group_size / 2 rows of 64 bytes: 8 KB at 256) and C.
  alignas(64) uint8_t b[256 / 2 * 64];
  alignas(64) float c[kMaxRows * kTile];

  __m512 out[kMaxRows];
  for (int r = 0; r < rows; ++r) {
    out[r] = t.accumulate ? _mm512_loadu_ps(t.c + r * t.ldc) : _mm512_setzero_ps();
  }
  const uint8_t* w = t.w;
  const int64_t pairs = t.group_size / 2;
  for (int64_t g = t.k0 / t.group_size; g < t.k1 / t.group_size; ++g) {
    prefetch_next_tile_scales(t, g, 2);
    // 1. Unpack the group into B tiles: chunk i is row i (k pair i).
    for (int64_t i = 0; i < pairs; i += 4, w += 64) {
      prefetch_weights(w);
      for (int j = 0; j < 4; ++j) {
        const __m512i v =
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 16 * j)));
        const __m512i x = _mm512_slli_epi32(v, 12);
        const __m512i q = _mm512_and_si512(_mm512_ternarylogic_epi32(v, x, bias, 0xFE), keep);
        _mm512_store_si512(b + (i + j) * 64, q);
      }
    }
    // 2. C = A[:, group] @ B.
    _tile_zero(0);
    const int64_t k_group = g * t.group_size;
    for (int64_t p = 0; p < pairs; p += kPairsPerTile) {
      _tile_loadd(1, a + k_group + 2 * p, t.lda * 2);
      _tile_loadd(2, b + p * 64, 64);
      _tile_dpbf16ps(0, 1, 2);
    }
    _tile_stored(0, c, kTile * 4);
    // 3. Fold: z' - 128 s = z - 136 s removes the 128 added to every weight.
    __m512 s, z;
    load_scales(t.sz, g * t.n * 2, s, z);
    const __m512 zb = _mm512_fnmadd_ps(_mm512_set1_ps(136.0f), s, z);
    for (int r = 0; r < rows; ++r) {
      out[r] = _mm512_fmadd_ps(s, _mm512_load_ps(c + r * kTile), out[r]);
      out[r] = _mm512_fmadd_ps(zb, _mm512_set1_ps(t.sum_a[r * t.ld_sum + g]), out[r]);
    }
  }
  for (int r = 0; r < rows; ++r) _mm512_storeu_ps(t.c + r * t.ldc, out[r]);
  _tile_release();
}

}  // namespace int4mm::detail::cpu::amx
