// Host-side conversions between float32 and the two 16-bit float formats,
// round-to-nearest-even, NaN and Inf preserved. Scalar and portable: used by
// the reference backend, the quantizer and tests; the CPU kernels convert in
// vector registers instead.
#pragma once

#include <cstdint>
#include <cstring>

#include "int4mm/int4mm.h"

namespace int4mm::detail {

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline float bf16_to_float(uint16_t h) { return bits_float(uint32_t(h) << 16); }

inline uint16_t float_to_bf16(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round half to even
  return uint16_t(u >> 16);
}

inline float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_float(sign | 0x7f800000u | (mant << 13));  // Inf, NaN
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24, exact in float.
    const float v = float(mant) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

inline uint16_t float_to_half(float f) {
  const uint32_t u = float_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return uint16_t(sign | 0x7e00u);  // NaN
  if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to Inf
  if (abs < 0x38800000u) {
    // Subnormal half (or zero): round abs / 2^-24 to an integer, ties to even.
    // Adding 0.5f makes the FPU do the rounding at the right bit position.
    const float scaled = bits_float(abs) * 16777216.0f;  // exact: power of two
    const float rounded = scaled + 8388608.0f;           // forces RNE to integer
    return uint16_t(sign | uint16_t(float_bits(rounded) - 0x4b000000u));
  }
  // Normal: rebias the exponent, round the 13 dropped mantissa bits to even.
  uint32_t v = abs - 0x38000000u;  // exponent bias 127 -> 15
  v += 0xfffu + ((v >> 13) & 1u);
  return uint16_t(sign | uint16_t(v >> 13));
}

// Loads element i of a float32/float16/bfloat16 array as float.
inline float load_float(const void* p, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::kFloat16: return half_to_float(static_cast<const uint16_t*>(p)[i]);
    case DType::kBFloat16: return bf16_to_float(static_cast<const uint16_t*>(p)[i]);
    default: return static_cast<const float*>(p)[i];
  }
}

// Stores v, rounded once to the dtype, as element i.
inline void store_float(void* p, DType dtype, int64_t i, float v) {
  switch (dtype) {
    case DType::kFloat16: static_cast<uint16_t*>(p)[i] = float_to_half(v); break;
    case DType::kBFloat16: static_cast<uint16_t*>(p)[i] = float_to_bf16(v); break;
    default: static_cast<float*>(p)[i] = v; break;
  }
}

// Rounds v to the dtype and back: the value that storing v would keep.
inline float round_to(DType dtype, float v) {
  switch (dtype) {
    case DType::kFloat16: return half_to_float(float_to_half(v));
    case DType::kBFloat16: return bf16_to_float(float_to_bf16(v));
    default: return v;
  }
}

}  // namespace int4mm::detail
