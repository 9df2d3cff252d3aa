// Loading one group's (scale, zero) pairs for 16 columns into AVX-512
// registers, shared by the AVX-512 kernels (kernels_avx512.cpp and
// kernels_avx512_bf16.cpp through avx512_tile.h, kernels_amx.cpp).
// Include it only from translation units compiled for AVX-512: the anonymous
// namespace gives each of them its own copy, built with its own -m flags.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "int4mm/int4mm.h"

namespace int4mm::detail::cpu {
namespace {

// scales_and_zeros[offset .. offset + 32) = (s0 z0 s1 z1 ... s15 z15) in
// dtype -> s = (s0 .. s15), z = (z0 .. z15) as floats.
inline void load_scales_and_zeros(const void* sz, DType dtype, int64_t offset, __m512& s,
                                  __m512& z) {
  __m512 lo, hi;  // (s0 z0 s1 z1 ... s7 z7), (s8 z8 ... s15 z15)
  if (dtype == DType::kFloat32) {
    const float* p = static_cast<const float*>(sz) + offset;
    lo = _mm512_loadu_ps(p);
    hi = _mm512_loadu_ps(p + 16);
  } else {
    const uint16_t* p = static_cast<const uint16_t*>(sz) + offset;
    const __m256i lo16 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const __m256i hi16 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16));
    if (dtype == DType::kFloat16) {
      lo = _mm512_cvtph_ps(lo16);
      hi = _mm512_cvtph_ps(hi16);
    } else {  // bfloat16: the high half of a float
      lo = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(lo16), 16));
      hi = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(hi16), 16));
    }
  }
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  s = _mm512_permutex2var_ps(lo, even, hi);
  z = _mm512_permutex2var_ps(lo, odd, hi);
}

}  // namespace
}  // namespace int4mm::detail::cpu
