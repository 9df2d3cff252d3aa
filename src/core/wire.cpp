#include "core/wire.h"

#include "core/check.h"

namespace int4mm::detail {

void int32_to_wire(const char* op, const int32_t* q, int64_t n, int64_t k, uint8_t* wire) {
  for (int64_t row = 0; row < n; ++row) {
    const int32_t* src = q + row * k;
    uint8_t* dst = wire + row * (k / 2);
    for (int64_t j = 0; j < k; j += 2) {
      const int32_t even = src[j];
      const int32_t odd = src[j + 1];
      if ((uint32_t(even) | uint32_t(odd)) > 15u) {
        const bool bad_even = uint32_t(even) > 15u;
        fail(op, "q values must be in 0..15, got ", bad_even ? even : odd, " at q[", row, "][",
             bad_even ? j : j + 1, "]");
      }
      dst[j / 2] = uint8_t(even << 4 | odd);
    }
  }
}

void wire_to_int32(const uint8_t* wire, int64_t n, int64_t k, int32_t* q) {
  for (int64_t row = 0; row < n; ++row) {
    for (int64_t j = 0; j < k; ++j) q[row * k + j] = wire_nibble(wire + row * (k / 2), j);
  }
}

}  // namespace int4mm::detail
