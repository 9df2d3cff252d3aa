// AVX2 kernel of the CPU backend (compiled with -mavx2 -mfma -mf16c).
// A 16-column tile is two halves of 8 float lanes; each half reads the low
// 8 bytes of every 16-byte chunk (vpmovzxbd ymm). Rows go 4 at a time (16
// ymm registers: 4 rows x 2 chains + weights + scales).
// Limitations: 1. width 16 only (tail tiles go to the scalar kernel).
//   2. scales and zeros are read with scalar loads (once per group and 8
//      columns, about 1 load per 16 weights: cheap next to the 32 FMAs).
#include <immintrin.h>

#include "cpu/cpu_kernels.h"

namespace int4mm::detail::cpu::avx2 {
namespace {

// A scale or zero as float. Local on purpose: an inline helper shared with
// the portable code (core/float16.h) compiled here with -mavx2 could be the
// copy the linker keeps for every caller, including the scalar path.
inline float load_value(const void* p, DType dtype, int64_t i) {
  if (dtype == DType::kFloat32) return static_cast<const float*>(p)[i];
  const uint16_t h = static_cast<const uint16_t*>(p)[i];
  if (dtype == DType::kFloat16) return _cvtsh_ss(h);
  return _mm_cvtss_f32(_mm_castsi128_ps(_mm_cvtsi32_si128(int(uint32_t(h) << 16))));
}

template <int kRows>
void half_rows(const TileArgs& t, int row0, int half) {
  constexpr int kChains = kRows == 1 ? 4 : 2;
  const auto* a = static_cast<const float*>(t.a) + row0 * t.lda;
  const float* sum_a = t.sum_a + row0 * t.ld_sum;
  float* c = t.c + row0 * t.ldc + 8 * half;
  const __m256i low4 = _mm256_set1_epi32(15);

  __m256 out[kRows];
  for (int r = 0; r < kRows; ++r) {
    out[r] = t.accumulate ? _mm256_loadu_ps(c + r * t.ldc) : _mm256_setzero_ps();
  }
  const uint8_t* w = t.w + 8 * half;
  const int64_t sz_size = dtype_size(t.sz_dtype);
  for (int64_t g = t.k0 / t.group_size; g < t.k1 / t.group_size; ++g) {
    prefetch_next_tile_scales(t, g, sz_size);
    __m256 acc[kRows][kChains];
    for (int r = 0; r < kRows; ++r) {
      for (int h = 0; h < kChains; ++h) acc[r][h] = _mm256_setzero_ps();
    }
    for (int64_t k = g * t.group_size; k < (g + 1) * t.group_size; k += 8, w += 64) {
      prefetch_weights(w);
      for (int j = 0; j < 4; ++j) {
        const __m256i v =
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + 16 * j)));
        const __m256 q_even = _mm256_cvtepi32_ps(_mm256_and_si256(v, low4));
        const __m256 q_odd = _mm256_cvtepi32_ps(_mm256_srli_epi32(v, 4));
        for (int r = 0; r < kRows; ++r) {
          const float* ar = a + r * t.lda + k + 2 * j;
          __m256& even_acc = acc[r][(2 * j) % kChains];
          even_acc = _mm256_fmadd_ps(_mm256_set1_ps(ar[0]), q_even, even_acc);
          __m256& odd_acc = acc[r][(2 * j + 1) % kChains];
          odd_acc = _mm256_fmadd_ps(_mm256_set1_ps(ar[1]), q_odd, odd_acc);
        }
      }
    }
    alignas(32) float s[8], zp[8];
    for (int col = 0; col < 8; ++col) {
      const int64_t at = (g * t.n + 8 * half + col) * 2;
      s[col] = load_value(t.sz, t.sz_dtype, at);
      zp[col] = load_value(t.sz, t.sz_dtype, at + 1) - 8.0f * s[col];
    }
    const __m256 sv = _mm256_load_ps(s), zv = _mm256_load_ps(zp);
    for (int r = 0; r < kRows; ++r) {
      for (int step = kChains / 2; step >= 1; step /= 2) {
        for (int h = 0; h < step; ++h) acc[r][h] = _mm256_add_ps(acc[r][h], acc[r][h + step]);
      }
      out[r] = _mm256_fmadd_ps(sv, acc[r][0], out[r]);
      out[r] = _mm256_fmadd_ps(zv, _mm256_set1_ps(sum_a[r * t.ld_sum + g]), out[r]);
    }
  }
  for (int r = 0; r < kRows; ++r) _mm256_storeu_ps(c + r * t.ldc, out[r]);
}

}  // namespace

void mm_tile(const TileArgs& t) {
  for (int half = 0; half < 2; ++half) {
    for (int row0 = 0; row0 < t.rows; row0 += 4) {
      dispatch_rows<4>(t.rows - row0,
                       [&](auto rows) { half_rows<decltype(rows)::value>(t, row0, half); });
    }
  }
}

}  // namespace int4mm::detail::cpu::avx2
