// AVX-512 kernel of the CPU backend (compiled with -mavx512f -mavx512bw
// -mavx512vl -mavx512dq -mfma -mf16c; called only when CPUID has them).
//
// One full tile (16 columns = one zmm) x up to 8 rows of A (float32) x a
// group-aligned k range. Per 64-byte line (8 k x 16 columns):
//   4 x { vpmovzxbd 16 bytes; VPERMPS from a 16-float table -> k even;
//         shift 4, VPERMPS -> k odd }  (5 instructions; was 6 with and + 2 cvtdq2ps)
//   then 2 FMAs per row and chunk with broadcast a[k].
// The unpacked weight vectors are reused by every row (small M), and the
// per-group partial sums use several accumulator chains so that FMA latency
// (4 cycles, 2 per cycle) never stalls: rows x chains >= 8.
// Limitations: 1. width must be 16 (the tail tile goes to the scalar kernel).
#include <immintrin.h>

#include "cpu/avx512_scales.h"
#include "cpu/cpu_kernels.h"

namespace int4mm::detail::cpu::avx512 {
namespace {

// Loads the (scale, zero) pairs of 16 columns of one group and returns the
// scales and z' = zero - 8 * scale, as floats.
inline void load_scales(const void* sz, DType dtype, int64_t offset, __m512& s, __m512& zp) {
  __m512 z;
  load_scales_and_zeros(sz, dtype, offset, s, z);
  zp = _mm512_fnmadd_ps(_mm512_set1_ps(8.0f), s, z);
}

template <int kRows>
void tile_rows(const TileArgs& t) {
  // Accumulator chains per row: enough independent FMAs in flight.
  constexpr int kChains = kRows == 1 ? 8 : kRows == 2 ? 4 : 2;
  const auto* a = static_cast<const float*>(t.a);
  // Float value of each nibble: VPERMPS reads only the low 4 bits of each
  // index lane, so no mask and no int-to-float conversion is needed.
  const __m512 nibble_value = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);

  __m512 out[kRows];
  for (int r = 0; r < kRows; ++r) {
    out[r] = t.accumulate ? _mm512_loadu_ps(t.c + r * t.ldc) : _mm512_setzero_ps();
  }
  const uint8_t* w = t.w;
  const int64_t sz_size = dtype_size(t.sz_dtype);
  for (int64_t g = t.k0 / t.group_size; g < t.k1 / t.group_size; ++g) {
    prefetch_next_tile_scales(t, g, sz_size);
    __m512 acc[kRows][kChains];
    for (int r = 0; r < kRows; ++r) {
      for (int h = 0; h < kChains; ++h) acc[r][h] = _mm512_setzero_ps();
    }
    for (int64_t k = g * t.group_size; k < (g + 1) * t.group_size; k += 8, w += 64) {
      prefetch_weights(w);
      for (int j = 0; j < 4; ++j) {
        const __m512i v =
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 16 * j)));
        const __m512 q_even = _mm512_permutexvar_ps(v, nibble_value);
        const __m512 q_odd = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), nibble_value);
        for (int r = 0; r < kRows; ++r) {
          const float* ar = a + r * t.lda + k + 2 * j;
          __m512& even_acc = acc[r][(2 * j) % kChains];
          even_acc = _mm512_fmadd_ps(_mm512_set1_ps(ar[0]), q_even, even_acc);
          __m512& odd_acc = acc[r][(2 * j + 1) % kChains];
          odd_acc = _mm512_fmadd_ps(_mm512_set1_ps(ar[1]), q_odd, odd_acc);
        }
      }
    }
    __m512 s, zp;
    load_scales(t.sz, t.sz_dtype, g * t.n * 2, s, zp);
    for (int r = 0; r < kRows; ++r) {
      for (int step = kChains / 2; step >= 1; step /= 2) {
        for (int h = 0; h < step; ++h) acc[r][h] = _mm512_add_ps(acc[r][h], acc[r][h + step]);
      }
      out[r] = _mm512_fmadd_ps(s, acc[r][0], out[r]);
      out[r] = _mm512_fmadd_ps(zp, _mm512_set1_ps(t.sum_a[r * t.ld_sum + g]), out[r]);
    }
  }
  for (int r = 0; r < kRows; ++r) _mm512_storeu_ps(t.c + r * t.ldc, out[r]);
}

}  // namespace

void mm_tile(const TileArgs& t) {
  switch (t.rows) {
    case 1: tile_rows<1>(t); break;
    case 2: tile_rows<2>(t); break;
    case 3: tile_rows<3>(t); break;
    case 4: tile_rows<4>(t); break;
    case 5: tile_rows<5>(t); break;
    case 6: tile_rows<6>(t); break;
    case 7: tile_rows<7>(t); break;
    default: tile_rows<8>(t); break;
  }
}

}  // namespace int4mm::detail::cpu::avx512
