// Shared by every backend's tests: random problems quantized by the reference
// quantizer, the float64 oracle, and a tolerance derived from dtype and K.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/float16.h"
#include "core/wire.h"
#include "int4mm/int4mm.h"

namespace int4mm {
// Readable test names and failure messages.
inline void PrintTo(DType dtype, std::ostream* os) { *os << dtype_name(dtype); }
inline void PrintTo(Backend backend, std::ostream* os) { *os << backend_name(backend); }
}  // namespace int4mm

namespace int4mm::testing {

// The dtypes and group sizes every backend is tested on: one list, so that
// the backends' test parameters cannot drift apart.
inline const std::vector<DType>& float_dtypes() {
  static const std::vector<DType> v{DType::kFloat32, DType::kFloat16, DType::kBFloat16};
  return v;
}
inline const std::vector<int64_t>& group_sizes() {
  static const std::vector<int64_t> v{32, 64, 128, 256};
  return v;
}

// Unit roundoff of a float dtype.
inline double unit_roundoff(DType dtype) {
  switch (dtype) {
    case DType::kFloat16: return std::ldexp(1.0, -11);
    case DType::kBFloat16: return std::ldexp(1.0, -8);
    default: return std::ldexp(1.0, -24);
  }
}

// A host array of a float dtype, as raw bytes.
struct HostArray {
  DType dtype = DType::kFloat32;
  std::vector<uint8_t> bytes;

  HostArray() = default;
  HostArray(DType d, int64_t count) : dtype(d), bytes(size_t(count * dtype_size(d))) {}
  void* data() { return bytes.data(); }
  const void* data() const { return bytes.data(); }
  int64_t size() const { return int64_t(bytes.size()) / dtype_size(dtype); }
  float get(int64_t i) const { return detail::load_float(bytes.data(), dtype, i); }
  void set(int64_t i, float v) { detail::store_float(bytes.data(), dtype, i, v); }
};

// One quantized matmul problem: A [m, k], W quantized to q (wire) + sz.
struct Problem {
  int64_t m = 0, n = 0, k = 0, group_size = 0;
  DType dtype = DType::kFloat32;
  HostArray a;               // [m, k]
  HostArray w;               // [n, k] unquantized
  std::vector<uint8_t> q;    // wire [n, k/2]
  HostArray sz;              // [k/g, n, 2]

  TensorView a_view() { return TensorView::contiguous(a.data(), dtype, {m, k}); }
  TensorView q_view() { return TensorView::contiguous(q.data(), DType::kUInt8, {n, k / 2}); }
  TensorView sz_view() {
    return TensorView::contiguous(sz.data(), dtype, {k / group_size, n, 2});
  }

  // w[n][k] as the contract dequantizes it, in float64.
  double dequantized(int64_t row, int64_t col) const {
    const int64_t g = col / group_size;
    const double s = sz.get((g * n + row) * 2), z = sz.get((g * n + row) * 2 + 1);
    return (detail::wire_nibble(q.data() + row * (k / 2), col) - 8) * s + z;
  }
};

// Random A and W, W quantized by the default quantizer. `torch_style` draws
// both from U[0, 1) as PyTorch's test__int4_mm does; otherwise A is N(0, 1)
// and W's rows have different scales and offsets.
inline Problem make_problem(int64_t m, int64_t n, int64_t k, int64_t group_size, DType dtype,
                            uint32_t seed = 1, bool torch_style = false) {
  Problem p;
  p.m = m, p.n = n, p.k = k, p.group_size = group_size, p.dtype = dtype;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  p.a = HostArray(dtype, m * k);
  for (int64_t i = 0; i < m * k; ++i) p.a.set(i, torch_style ? uniform(rng) : normal(rng));
  p.w = HostArray(dtype, n * k);
  for (int64_t r = 0; r < n; ++r) {
    const float row_scale = 0.02f * float(1 + r % 7);
    for (int64_t c = 0; c < k; ++c) {
      p.w.set(r * k + c, torch_style ? uniform(rng)
                                     : row_scale * normal(rng) + 0.001f * float(r % 3));
    }
  }
  p.q.resize(size_t(n * k / 2));
  p.sz = HostArray(dtype, (k / group_size) * n * 2);
  group_quantize(TensorView::contiguous(p.w.data(), dtype, {n, k}), group_size, p.q_view(),
                 p.sz_view());
  return p;
}

// The float64 product C = A @ dequantize(W)^T, with the sums the tolerance needs.
struct Oracle {
  std::vector<double> c;     // [m, n]
  std::vector<double> abs;   // sum_k |a w|
  std::vector<double> l2;    // sqrt(sum_k (a w)^2)
};

inline Oracle oracle(const Problem& p) {
  Oracle o;
  o.c.assign(size_t(p.m * p.n), 0.0);
  o.abs = o.c;
  o.l2 = o.c;
  std::vector<double> a(size_t(p.m * p.k));
  for (int64_t i = 0; i < p.m * p.k; ++i) a[size_t(i)] = p.a.get(i);
  // Columns of C in parallel (OpenMP, which int4mm links): each element is
  // summed in the same order whatever the thread count.
#pragma omp parallel
  {
    std::vector<double> w(size_t(p.k));
#pragma omp for schedule(static)
    for (int64_t j = 0; j < p.n; ++j) {
      for (int64_t l = 0; l < p.k; ++l) w[size_t(l)] = p.dequantized(j, l);
      for (int64_t i = 0; i < p.m; ++i) {
        const double* row = a.data() + i * p.k;
        double acc = 0, abs = 0, sq = 0;
        for (int64_t l = 0; l < p.k; ++l) {
          const double t = row[l] * w[size_t(l)];
          acc += t, abs += std::fabs(t), sq += t * t;
        }
        const size_t at = size_t(i * p.n + j);
        o.c[at] = acc, o.abs[at] = abs, o.l2[at] = std::sqrt(sq);
      }
    }
  }
  return o;
}

// The bound on |C - C64| for a kernel that accumulates in float32 and rounds
// once to the dtype; it also admits kernels that round each dequantized
// weight to the dtype first (the dequantize + GEMM paths):
//   output rounding             u_T * |C|
//   weights rounded to T        u_T * ||a w||_2, times 4 for the random walk's tail
//   float32 accumulation        sqrt(K) * u_32 * sum |a w|, times 8
inline double tolerance(DType dtype, int64_t k, double c, double abs, double l2) {
  const double u = unit_roundoff(dtype);
  const double u32 = std::ldexp(1.0, -24);
  return 2 * u * std::fabs(c) + 4 * u * l2 + 8 * std::sqrt(double(k)) * u32 * abs + 1e-30;
}

// Checks every element of c (host, p.dtype, [m, n] with row stride ldc).
inline void expect_matches_oracle(const Problem& p, const Oracle& o, const HostArray& c,
                                  int64_t ldc, const std::string& what) {
  int64_t bad = 0;
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t j = 0; j < p.n; ++j) {
      const double got = c.get(i * ldc + j);
      const double want = o.c[i * p.n + j];
      const double tol = tolerance(p.dtype, p.k, want, o.abs[i * p.n + j], o.l2[i * p.n + j]);
      if (!(std::fabs(got - want) <= tol) && bad++ < 5) {
        ADD_FAILURE() << what << ": C[" << i << "][" << j << "] = " << got << ", want " << want
                      << " +- " << tol << " (M=" << p.m << " N=" << p.n << " K=" << p.k
                      << " group_size=" << p.group_size << " " << dtype_name(p.dtype) << ")";
      }
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << p.m * p.n << " elements out of tolerance";
}

// PyTorch's criterion (test__int4_mm): mean(|C - A@B| / |A@B|) < 0.05
// against the UNQUANTIZED product.
inline double mean_relative_error_vs_unquantized(const Problem& p, const HostArray& c) {
  double total = 0;
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t j = 0; j < p.n; ++j) {
      double exact = 0;
      for (int64_t l = 0; l < p.k; ++l) exact += double(p.a.get(i * p.k + l)) * p.w.get(j * p.k + l);
      total += std::fabs(c.get(i * p.n + j) - exact) / std::fabs(exact);
    }
  }
  return total / double(p.m * p.n);
}

// Expects `body` to throw int4mm::Error whose message contains `needle`.
template <typename F>
void expect_error(F&& body, const std::string& needle) {
  try {
    body();
    ADD_FAILURE() << "expected int4mm::Error containing '" << needle << "', nothing was thrown";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message '" << e.what() << "' lacks '" << needle << "'";
  }
}

}  // namespace int4mm::testing
