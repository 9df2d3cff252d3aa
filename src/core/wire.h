// The two wire formats of q (CONTRACT.md) and the only host code outside the
// backends' packing that knows nibble positions:
//   int32 [N, K], values 0..15
//   uint8 [N, K/2], byte j of row n = q[n][2j] << 4 | q[n][2j+1]  (HIGH nibble = even k)
#pragma once

#include <cstdint>

namespace int4mm::detail {

// q[n][k] from a wire-format row.
inline int wire_nibble(const uint8_t* row, int64_t k) {
  const uint8_t byte = row[k >> 1];
  return (k & 1) ? (byte & 0xf) : (byte >> 4);
}

// Packs int32 [n, k] into wire [n, k/2]; a value outside 0..15 is an error
// of `op` naming the first offending element.
void int32_to_wire(const char* op, const int32_t* q, int64_t n, int64_t k, uint8_t* wire);

void wire_to_int32(const uint8_t* wire, int64_t n, int64_t k, int32_t* q);

}  // namespace int4mm::detail
