// The interface between the validation layer (src/core/ops.cpp) and the
// backends. Everything here receives arguments that ops.cpp has already
// validated: shapes agree, dtypes agree, pointers are on the right device,
// K is a multiple of group_size, group_size is 32/64/128/256, N >= 1, M >= 1.
// Backends never validate user input again; they may still throw int4mm::Error
// for failures of their own (a CUDA call failing, say).
#pragma once

#include <cstdint>

#include "int4mm/int4mm.h"

namespace int4mm::detail {

// Arguments of one matmul, as raw pointers and sizes.
struct MmArgs {
  DType dtype;           // of a, scales_and_zeros and c
  const void* a;         // [m, k], row stride lda (elements), innermost contiguous
  int64_t lda;
  const uint8_t* packed; // the backend's layout for n x k
  const void* sz;        // [k / group_size, n, 2], contiguous
  void* c;               // [m, n], row stride ldc
  int64_t ldc;
  int64_t m, n, k, group_size;
  const Options* options;
  int device = 0;        // CUDA ordinal of every pointer (kCuda only)
};

// Arguments of a dequantize: w [n, k] row stride ldw, in w_dtype; sz in sz_dtype.
struct DequantArgs {
  const uint8_t* packed;
  const void* sz;
  DType sz_dtype;
  void* w;
  DType w_dtype;
  int64_t ldw;
  int64_t n, k, group_size;
  const Options* options;
  int device = 0;        // CUDA ordinal of every pointer (kCuda only)
};

// The reference backend: packed layout = uint8 wire format [n, k/2].
namespace reference {
void mm(const MmArgs& args);  // float64 accumulation, scalar
void dequantize(const DequantArgs& args);
}  // namespace reference

// The CPU backend (src/cpu).
namespace cpu {
PackedShape packed_shape(int64_t n, int64_t k);
// wire [n, k/2] (row stride k/2) -> packed
void pack(const uint8_t* wire, int64_t n, int64_t k, uint8_t* packed, const Options& options);
void unpack(const uint8_t* packed, int64_t n, int64_t k, uint8_t* wire, const Options& options);
void mm(const MmArgs& args);
void dequantize(const DequantArgs& args);
}  // namespace cpu

// The CUDA backend (src/cuda). Every pointer is device memory; all work is
// enqueued on options.stream.
namespace cuda {
bool available();  // compiled in and at least one device present
PackedShape packed_shape(int64_t n, int64_t k);
// q is int32 [n, k] (q_is_int32) or wire uint8 [n, k/2], device memory.
// Throws int4mm::Error for values outside 0..15 (synchronizes the stream).
void pack(const void* q, bool q_is_int32, int64_t n, int64_t k, uint8_t* packed,
          const Options& options, int device);
void unpack(const uint8_t* packed, int64_t n, int64_t k, void* q, bool q_is_int32,
            const Options& options, int device);
void mm(const MmArgs& args);
void dequantize(const DequantArgs& args);
}  // namespace cuda

}  // namespace int4mm::detail
