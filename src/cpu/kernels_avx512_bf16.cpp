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
// The group fold and the rows' load and store: avx512_tile.h (shared with the
// FMA kernel).
// Limitations: 1. width 16 only (tail tiles go to the scalar kernel).
//   2. VDPBF16PS treats bf16 subnormals as zero and rounds to nearest even;
//      activations below 2^-126 are flushed.
#include <immintrin.h>

#include <cstring>

#include "cpu/avx512_tile.h"
#include "cpu/cpu_kernels.h"

namespace int4mm::detail::cpu::avx512_bf16 {
namespace {

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
  load_rows(t, out);
  const uint8_t* w = t.w;
  for (int64_t g = t.k0 / t.group_size; g < t.k1 / t.group_size; ++g) {
    prefetch_next_tile_scales(t, g, 2);
    __m512 acc[kRows][kChains];
    zero_chains(acc);
    for (int64_t k = g * t.group_size; k < (g + 1) * t.group_size; k += 8, w += 64) {
      prefetch_weights(w);
      for (int j = 0; j < 4; ++j) {
        const __m512i v = load_chunk(w, j);
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
    // Sums a * (128 + q): z' - 128 s = zero - 136 s removes the 128.
    fold_group(t, g, DType::kBFloat16, 136.0f, acc, out);
  }
  store_rows(t, out);
}

}  // namespace

void mm_tile(const TileArgs& t) {
  dispatch_rows<kMaxRows>(t.rows, [&](auto rows) { tile_rows<decltype(rows)::value>(t); });
}

}  // namespace int4mm::detail::cpu::avx512_bf16
