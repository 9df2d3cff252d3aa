// AVX-512 BF16 kernel of the CPU backend, for bfloat16 activations only
// (compiled with the AVX-512 flags plus -mavx512bf16).
//
// VDPBF16PS computes, per float lane, acc += a0*w0 + a1*w1 on bf16 pairs: two
// products per lane and instruction, half the FMA count of the float kernel,
// which is what keeps M = 2..8 and large M close to the M = 1 time.
// The weights become bf16 WITHOUT a conversion instruction: a nibble q in the
// low mantissa bits of 0x4300 (= 128.0, whose mantissa unit is 1) is the bf16
// value 128 + q, exactly. So the dot product sums a * (128 + q), and the group
// result is s * acc + (z' - 128 s) * sum(a). The 128 * sum(a) term costs about
// 4 bits of the float32 accumulator (|a * 128| vs |a * q|), far below a bf16
// output's rounding.
//
// Per 16-byte chunk (2 k x 16 columns):
//   v = vpmovzxbd chunk                 lane = (k odd nibble << 4) | k even nibble
//   x = v << 12                         k odd nibble now at bits 16..19
//   y = (v | x | 0x43004300) & 0x430F430F
//       = [bf16(128 + q_even) | bf16(128 + q_odd) << 16]
// (0x4300's bit 14 may be hit by x's garbage bits; OR-ing it in first makes it 1.)
// The A pair (a[k], a[k+1]) is one 32-bit broadcast of the bf16 row.
// Limitations: 1. width 16 only (tail tiles go to the scalar kernel).
//   2. VDPBF16PS treats bf16 subnormals as zero and rounds to nearest even;
//      activations below 2^-126 are flushed.
#include <immintrin.h>

#include <cstring>

#include "cpu/cpu_kernels.h"

namespace int4mm::detail::cpu::avx512_bf16 {
namespace {

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

inline __m512i broadcast_pair(const uint16_t* p) {
  int32_t pair;
  std::memcpy(&pair, p, sizeof pair);
  return _mm512_set1_epi32(pair);
}

template <int kRows>
void tile_rows(const TileArgs& t) {
  constexpr int kChains = kRows == 1 ? 4 : kRows <= 4 ? 2 : 1;
  const auto* a = static_cast<const uint16_t*>(t.a);
  const __m512i bias = _mm512_set1_epi32(0x43004300);
  const __m512i keep = _mm512_set1_epi32(0x430F430F);

  __m512 out[kRows];
  for (int r = 0; r < kRows; ++r) {
    out[r] = t.accumulate ? _mm512_loadu_ps(t.c + r * t.ldc) : _mm512_setzero_ps();
  }
  const uint8_t* w = t.w;
  for (int64_t g = t.k0 / t.group_size; g < t.k1 / t.group_size; ++g) {
    prefetch_next_tile_scales(t, g, 2);
    __m512 acc[kRows][kChains];
    for (int r = 0; r < kRows; ++r) {
      for (int h = 0; h < kChains; ++h) acc[r][h] = _mm512_setzero_ps();
    }
    for (int64_t k = g * t.group_size; k < (g + 1) * t.group_size; k += 8, w += 64) {
      prefetch_weights(w);
      for (int j = 0; j < 4; ++j) {
        const __m512i v =
            _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 16 * j)));
        const __m512i x = _mm512_slli_epi32(v, 12);
        // 0xFE: A | B | C.
        const __m512i q = _mm512_and_si512(_mm512_ternarylogic_epi32(v, x, bias, 0xFE), keep);
        for (int r = 0; r < kRows; ++r) {
          __m512& chain = acc[r][j % kChains];
          chain = _mm512_dpbf16_ps(chain, (__m512bh)broadcast_pair(a + r * t.lda + k + 2 * j),
                                   (__m512bh)q);
        }
      }
    }
    __m512 s, z;
    load_scales(t.sz, g * t.n * 2, s, z);
    // z' - 128 s = z - 136 s: removes the 128 added to every weight.
    const __m512 zb = _mm512_fnmadd_ps(_mm512_set1_ps(136.0f), s, z);
    for (int r = 0; r < kRows; ++r) {
      for (int step = kChains / 2; step >= 1; step /= 2) {
        for (int h = 0; h < step; ++h) acc[r][h] = _mm512_add_ps(acc[r][h], acc[r][h + step]);
      }
      out[r] = _mm512_fmadd_ps(s, acc[r][0], out[r]);
      out[r] = _mm512_fmadd_ps(zb, _mm512_set1_ps(t.sum_a[r * t.ld_sum + g]), out[r]);
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

}  // namespace int4mm::detail::cpu::avx512_bf16
