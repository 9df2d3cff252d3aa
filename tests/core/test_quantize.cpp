// The reference quantizer against hand-computed groups.
#include "test_util.h"

namespace int4mm::testing {
namespace {

struct Quantized {
  std::vector<int32_t> q;
  std::vector<float> sz;
};

Quantized quantize(std::vector<float> w, int64_t n, int64_t k, int64_t g,
                   QuantizerVariant variant) {
  Quantized out;
  out.q.resize(size_t(n * k));
  out.sz.resize(size_t(k / g * n * 2));
  group_quantize(TensorView::contiguous(w.data(), DType::kFloat32, {n, k}), g,
                 TensorView::contiguous(out.q.data(), DType::kInt32, {n, k}),
                 TensorView::contiguous(out.sz.data(), DType::kFloat32, {k / g, n, 2}), variant);
  return out;
}

class QuantizerVariants : public ::testing::TestWithParam<QuantizerVariant> {};

TEST_P(QuantizerVariants, LinearRampIsExact) {
  // w = 0, 1, ..., 31 / 31 * 15: min 0, max 15, scale 1, zero 8; q = w exactly.
  std::vector<float> w(32);
  for (int i = 0; i < 32; ++i) w[i] = float(i % 16);
  const Quantized r = quantize(w, 1, 32, 32, GetParam());
  EXPECT_FLOAT_EQ(r.sz[0], 1.0f);
  EXPECT_FLOAT_EQ(r.sz[1], 8.0f);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(r.q[i], i % 16) << "at " << i;
}

TEST_P(QuantizerVariants, TiesRoundHalfToEven) {
  // min 0, max 15 -> scale 1: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, 3.5 -> 4.
  std::vector<float> w(32, 0.0f);
  w[0] = 0.0f, w[1] = 15.0f, w[2] = 0.5f, w[3] = 1.5f, w[4] = 2.5f, w[5] = 3.5f;
  const Quantized r = quantize(w, 1, 32, 32, GetParam());
  EXPECT_EQ(r.q[2], 0);
  EXPECT_EQ(r.q[3], 2);
  EXPECT_EQ(r.q[4], 2);
  EXPECT_EQ(r.q[5], 4);
}

TEST_P(QuantizerVariants, ConstantGroupHasNoNaNAndZerosStayExact) {
  // Group 0: all zeros; group 1: all 3.25.
  std::vector<float> w(64, 0.0f);
  for (int i = 32; i < 64; ++i) w[i] = 3.25f;
  const Quantized r = quantize(w, 1, 64, 32, GetParam());
  for (float v : r.sz) EXPECT_TRUE(std::isfinite(v));
  for (int g = 0; g < 2; ++g) {
    const float s = r.sz[g * 2], z = r.sz[g * 2 + 1];
    EXPECT_GT(s, 0.0f);
    for (int i = g * 32; i < g * 32 + 32; ++i) {
      const float deq = float(r.q[i] - 8) * s + z;
      if (g == 0) {
        EXPECT_EQ(deq, 0.0f) << "zero group must dequantize to exact zeros";
      } else {
        EXPECT_NEAR(deq, 3.25f, 1e-5f);
      }
    }
  }
}

TEST_P(QuantizerVariants, ScalesAndZerosLayoutIsGroupMajor) {
  // Two rows, two groups: sz[g][n] = {scale, zero}.
  const int64_t n = 2, k = 64;
  std::vector<float> w(size_t(n * k));
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < k; ++c) w[r * k + c] = float((c % 32) % 16) * float(1 + r + 2 * (c / 32));
  }
  const Quantized q = quantize(w, n, k, 32, GetParam());
  for (int64_t g = 0; g < 2; ++g) {
    for (int64_t r = 0; r < n; ++r) {
      EXPECT_FLOAT_EQ(q.sz[(g * n + r) * 2], float(1 + r + 2 * g)) << "g=" << g << " n=" << r;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Both, QuantizerVariants,
                         ::testing::Values(QuantizerVariant::kStoredRounded,
                                           QuantizerVariant::kPyTorch));

TEST(Quantizer, StoredRoundedIsAtLeastAsAccurateInBFloat16) {
  const Problem p = make_problem(1, 64, 1024, 128, DType::kBFloat16);
  // Reconstruction error of the default (stored-rounded) quantizer...
  double err_stored = 0;
  for (int64_t r = 0; r < p.n; ++r) {
    for (int64_t c = 0; c < p.k; ++c) err_stored += std::fabs(p.dequantized(r, c) - p.w.get(r * p.k + c));
  }
  // ... against PyTorch's variant on the same W.
  Problem t = p;
  group_quantize(TensorView::contiguous(t.w.data(), t.dtype, {t.n, t.k}), t.group_size,
                 t.q_view(), t.sz_view(), QuantizerVariant::kPyTorch);
  double err_torch = 0;
  for (int64_t r = 0; r < t.n; ++r) {
    for (int64_t c = 0; c < t.k; ++c) err_torch += std::fabs(t.dequantized(r, c) - t.w.get(r * t.k + c));
  }
  EXPECT_LE(err_stored, err_torch * 1.0001);
}

}  // namespace
}  // namespace int4mm::testing
