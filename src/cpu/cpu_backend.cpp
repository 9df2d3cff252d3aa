// Placeholder CPU backend (issue 3 replaces it): wire layout, scalar float32.
#include <algorithm>

#include "core/backend.h"
#include "core/float16.h"
#include "core/wire.h"

namespace int4mm::detail::cpu {

PackedShape packed_shape(int64_t n, int64_t k) { return {n, k / 2}; }

void pack(const uint8_t* wire, int64_t n, int64_t k, uint8_t* packed, const Options&) {
  std::copy(wire, wire + n * k / 2, packed);
}

void unpack(const uint8_t* packed, int64_t n, int64_t k, uint8_t* wire, const Options&) {
  std::copy(packed, packed + n * k / 2, wire);
}

void mm(const MmArgs& args) {
  for (int64_t i = 0; i < args.m; ++i) {
    for (int64_t j = 0; j < args.n; ++j) {
      float acc = 0.0f;
      for (int64_t l = 0; l < args.k; ++l) {
        const int64_t g = l / args.group_size;
        const float s = load_float(args.sz, args.dtype, (g * args.n + j) * 2);
        const float z = load_float(args.sz, args.dtype, (g * args.n + j) * 2 + 1);
        const int q = wire_nibble(args.packed + j * (args.k / 2), l);
        acc += load_float(args.a, args.dtype, i * args.lda + l) * ((q - 8) * s + z);
      }
      store_float(args.c, args.dtype, i * args.ldc + j, acc);
    }
  }
}

void dequantize(const DequantArgs& args) { reference::dequantize(args); }

}  // namespace int4mm::detail::cpu
