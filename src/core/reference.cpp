// The reference backend: the oracle every other backend is tested against.
// Scalar, float64, straight from the contract's formula. Never optimize it.
#include "core/backend.h"
#include "core/float16.h"
#include "core/wire.h"

namespace int4mm::detail::reference {

namespace {

// w[n][k] = (q - 8) * scale + zero, in float64 from the stored scale and zero.
double dequant(const uint8_t* wire, const void* sz, DType sz_dtype, int64_t n, int64_t k,
               int64_t row, int64_t col, int64_t group_size) {
  const int64_t g = col / group_size;
  const double scale = load_float(sz, sz_dtype, (g * n + row) * 2 + 0);
  const double zero = load_float(sz, sz_dtype, (g * n + row) * 2 + 1);
  const int q = wire_nibble(wire + row * (k / 2), col);
  return (q - 8) * scale + zero;
}

}  // namespace

void mm(const MmArgs& args) {
  for (int64_t i = 0; i < args.m; ++i) {
    for (int64_t j = 0; j < args.n; ++j) {
      double acc = 0.0;
      for (int64_t l = 0; l < args.k; ++l) {
        const double a = load_float(args.a, args.dtype, i * args.lda + l);
        acc += a * dequant(args.packed, args.sz, args.dtype, args.n, args.k, j, l, args.group_size);
      }
      store_float(args.c, args.dtype, i * args.ldc + j, float(acc));
    }
  }
}

void dequantize(const DequantArgs& args) {
  for (int64_t j = 0; j < args.n; ++j) {
    for (int64_t l = 0; l < args.k; ++l) {
      const double w = dequant(args.packed, args.sz, args.sz_dtype, args.n, args.k, j, l, args.group_size);
      store_float(args.w, args.w_dtype, j * args.ldw + l, float(w));
    }
  }
}

}  // namespace int4mm::detail::reference
