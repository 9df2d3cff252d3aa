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
// The group fold and the rows' load and store: avx512_tile.h (shared with the
// VDPBF16PS kernel).
// Limitations: 1. width must be 16 (the tail tile goes to the scalar kernel).
#include <immintrin.h>

#include "cpu/avx512_tile.h"
#include "cpu/cpu_kernels.h"

namespace int4mm::detail::cpu::avx512 {
namespace {

template <int kRows>
void tile_rows(const TileArgs& t) {
  // Accumulator chains per row: enough independent FMAs in flight.
  constexpr int kChains = kRows == 1 ? 8 : kRows == 2 ? 4 : 2;
  const auto* a = static_cast<const float*>(t.a);
  // Float value of each nibble: VPERMPS reads only the low 4 bits of each
  // index lane, so no mask and no int-to-float conversion is needed.
  const __m512 nibble_value = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);

  __m512 out[kRows];
  load_rows(t, out);
  const uint8_t* w = t.w;
  const int64_t sz_size = dtype_size(t.sz_dtype);
  for (int64_t g = t.k0 / t.group_size; g < t.k1 / t.group_size; ++g) {
    prefetch_next_tile_scales(t, g, sz_size);
    __m512 acc[kRows][kChains];
    zero_chains(acc);
    for (int64_t k = g * t.group_size; k < (g + 1) * t.group_size; k += 8, w += 64) {
      prefetch_weights(w);
      for (int j = 0; j < 4; ++j) {
        const __m512i v = load_chunk(w, j);
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
    fold_group(t, g, t.sz_dtype, 8.0f, acc, out);  // sums a * q: z' = zero - 8 s
  }
  store_rows(t, out);
}

}  // namespace

void mm_tile(const TileArgs& t) {
  dispatch_rows<kMaxRows>(t.rows, [&](auto rows) { tile_rows<decltype(rows)::value>(t); });
}

}  // namespace int4mm::detail::cpu::avx512
