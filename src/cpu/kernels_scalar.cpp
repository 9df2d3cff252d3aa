// Portable kernel of the CPU backend (any CPU; also every tail tile, whose
// width is below 16, on every ISA). Same layout and algebra as the vector
// kernels (cpu_kernels.h), one column at a time.
#include "core/float16.h"
#include "cpu/cpu_kernels.h"

namespace int4mm::detail::cpu::scalar {

void mm_tile(const TileArgs& t) {
  const auto* a = static_cast<const float*>(t.a);
  const int64_t line = 4 * int64_t(t.width);  // bytes per 8 k
  for (int r = 0; r < t.rows; ++r) {
    for (int col = 0; col < t.width; ++col) {
      float out = t.accumulate ? t.c[r * t.ldc + col] : 0.0f;
      const uint8_t* w = t.w;
      for (int64_t g = t.k0 / t.group_size; g < t.k1 / t.group_size; ++g) {
        float acc = 0.0f;
        for (int64_t k = g * t.group_size; k < (g + 1) * t.group_size; k += 8, w += line) {
          for (int j = 0; j < 4; ++j) {
            const uint8_t byte = w[j * t.width + col];
            acc += a[r * t.lda + k + 2 * j] * float(byte & 15);
            acc += a[r * t.lda + k + 2 * j + 1] * float(byte >> 4);
          }
        }
        const float s = load_float(t.sz, t.sz_dtype, (g * t.n + col) * 2);
        const float z = load_float(t.sz, t.sz_dtype, (g * t.n + col) * 2 + 1);
        out += s * acc + (z - 8.0f * s) * t.sum_a[r * t.ld_sum + g];
      }
      t.c[r * t.ldc + col] = out;
    }
  }
}

}  // namespace int4mm::detail::cpu::scalar
