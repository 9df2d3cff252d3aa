// The per-group tail shared by the AVX-512 register kernels (kernels_avx512.cpp:
// float32 A, FMA; kernels_avx512_bf16.cpp: bfloat16 A, VDPBF16PS): the
// output rows' load and store, the chains' reset, the chunk load, and the fold
// of one group's accumulator chains.
// The kernels keep their own inner loops (they differ in the chunk step, and
// GCC 12 kept the accumulators in registers only with the loop in the kernel:
// with the chunk step as a lambda called from a shared loop it stored every
// accumulator to the stack once per 64-byte line).
// Include it only from translation units compiled for AVX-512: the anonymous
// namespace gives each of them its own copy, built with its own -m flags.
#pragma once

#include <immintrin.h>

#include "cpu/avx512_scales.h"
#include "cpu/cpu_kernels.h"

namespace int4mm::detail::cpu {
namespace {

// out[r] = the tile's 16 float32 columns of row r of C, or 0 (first k block).
template <int kRows>
inline void load_rows(const TileArgs& t, __m512 (&out)[kRows]) {
  for (int r = 0; r < kRows; ++r) {
    out[r] = t.accumulate ? _mm512_loadu_ps(t.c + r * t.ldc) : _mm512_setzero_ps();
  }
}

template <int kRows>
inline void store_rows(const TileArgs& t, const __m512 (&out)[kRows]) {
  for (int r = 0; r < kRows; ++r) _mm512_storeu_ps(t.c + r * t.ldc, out[r]);
}

template <int kRows, int kChains>
inline void zero_chains(__m512 (&acc)[kRows][kChains]) {
  for (int r = 0; r < kRows; ++r) {
    for (int h = 0; h < kChains; ++h) acc[r][h] = _mm512_setzero_ps();
  }
}

// Chunk j (0..3) of a 64-byte line, one byte per int32 lane, column order:
// lane c = (q[c][k odd] << 4) | q[c][k even].
inline __m512i load_chunk(const uint8_t* line, int j) {
  return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(line + 16 * j)));
}

// Group g's fold, with acc[r][0..kChains) the chains of row r that together
// sum a * (q + bias - 8) over the group (q the nibble):
//   out[r] += s * sum_h acc[r][h] + (zero - bias * s) * sum_a[r][g]
// bias 8: the FMA kernel sums a * q (z' = zero - 8 s); 136: the VDPBF16PS
// kernel sums a * (128 + q). sz_dtype: t.sz_dtype, or a constant where the
// kernel knows it (bfloat16). The chains are added pairwise (kChains a power of 2).
template <int kRows, int kChains>
inline void fold_group(const TileArgs& t, int64_t g, DType sz_dtype, float bias,
                       __m512 (&acc)[kRows][kChains], __m512 (&out)[kRows]) {
  static_assert(kChains >= 1 && (kChains & (kChains - 1)) == 0, "chains are added pairwise");
  __m512 s, z;
  load_scales_and_zeros(t.sz, sz_dtype, g * t.n * 2, s, z);
  const __m512 zb = _mm512_fnmadd_ps(_mm512_set1_ps(bias), s, z);
  for (int r = 0; r < kRows; ++r) {
    for (int step = kChains / 2; step >= 1; step /= 2) {
      for (int h = 0; h < step; ++h) acc[r][h] = _mm512_add_ps(acc[r][h], acc[r][h + step]);
    }
    out[r] = _mm512_fmadd_ps(s, acc[r][0], out[r]);
    out[r] = _mm512_fmadd_ps(zb, _mm512_set1_ps(t.sum_a[r * t.ld_sum + g]), out[r]);
  }
}

}  // namespace
}  // namespace int4mm::detail::cpu
