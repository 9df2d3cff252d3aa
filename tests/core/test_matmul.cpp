// The reference backend against the float64 oracle, and the host backends on
// PyTorch's own criterion. (The CPU backend's full shape sweep lives in
// tests/cpu; the reference is too slow for the large shapes.)
#include "test_util.h"

namespace int4mm::testing {
namespace {

HostArray run_mm(Problem& p, Backend backend, int64_t ldc = -1) {
  if (ldc < 0) ldc = p.n;
  const Options options{backend};
  const PackedShape shape = packed_shape(backend, p.n, p.k);
  std::vector<uint8_t> packed(size_t(shape.rows * shape.cols));
  const auto packed_view =
      TensorView::contiguous(packed.data(), DType::kUInt8, {shape.rows, shape.cols});
  convert_weight_to_int4pack(p.q_view(), packed_view, 8, options);
  HostArray c(p.dtype, std::max<int64_t>(p.m * ldc, 1));
  TensorView c_view = TensorView::contiguous(c.data(), p.dtype, {p.m, p.n});
  c_view.strides[0] = ldc;
  weight_int4pack_mm(p.a_view(), packed_view, p.group_size, p.sz_view(), c_view, options);
  return c;
}

using Shape = std::tuple<int64_t, int64_t, int64_t>;  // m, n, k

class ReferenceMatmul
    : public ::testing::TestWithParam<std::tuple<Shape, DType, int64_t>> {};

TEST_P(ReferenceMatmul, MatchesOracle) {
  const auto [shape, dtype, group_size] = GetParam();
  const auto [m, n, k_min] = shape;
  // K: the shape's K rounded up to a multiple of the group size, so that every
  // (shape, group size) pair runs.
  const int64_t k = (k_min + group_size - 1) / group_size * group_size;
  Problem p = make_problem(m, n, k, group_size, dtype, uint32_t(m + n + k));
  const Oracle o = oracle(p);
  // A strided C (row stride n + 3) checks that the backend honours ldc.
  const HostArray c = run_mm(p, Backend::kReference, n + 3);
  expect_matches_oracle(p, o, c, n + 3, "reference");
}

INSTANTIATE_TEST_SUITE_P(
    OddShapes, ReferenceMatmul,
    ::testing::Combine(::testing::Values(Shape{1, 1, 32}, Shape{3, 7, 64}, Shape{17, 48, 256},
                                         Shape{2, 19, 512}),
                       ::testing::ValuesIn(float_dtypes()), ::testing::ValuesIn(group_sizes())));

TEST(ReferenceMatmul, EmptyMProducesNothing) {
  Problem p = make_problem(0, 5, 64, 32, DType::kFloat32);
  std::vector<uint8_t> wire = p.q;
  float sentinel = 42.0f;
  weight_int4pack_mm(p.a_view(), p.q_view(), 32, p.sz_view(),
                     TensorView::contiguous(&sentinel, DType::kFloat32, {0, 5}),
                     Options{Backend::kReference});
  EXPECT_EQ(sentinel, 42.0f);
}

// test__int4_mm: mean relative error against the UNQUANTIZED product < 0.05,
// M in {1, 32, 64}, N in {48, 64}, K = group_size * {1, 2}.
class TorchCriterion
    : public ::testing::TestWithParam<std::tuple<Backend, DType, int64_t, int64_t, int64_t, int64_t>> {};

TEST_P(TorchCriterion, MeanRelativeErrorBelowFivePercent) {
  const auto [backend, dtype, group_size, m, n, k_groups] = GetParam();
  Problem p = make_problem(m, n, group_size * k_groups, group_size, dtype, 7, /*torch_style=*/true);
  const HostArray c = run_mm(p, backend);
  EXPECT_LT(mean_relative_error_vs_unquantized(p, c), 0.05);
}

INSTANTIATE_TEST_SUITE_P(
    HostBackends, TorchCriterion,
    ::testing::Combine(::testing::Values(Backend::kReference, Backend::kCpu),
                       ::testing::ValuesIn(float_dtypes()), ::testing::ValuesIn(group_sizes()),
                       ::testing::Values(1, 32, 64), ::testing::Values(48, 64),
                       ::testing::Values(1, 2)));

TEST(Dequantize, MatchesContractFormula) {
  for (DType dtype : float_dtypes()) {
    Problem p = make_problem(1, 9, 128, 32, dtype);
    HostArray w(DType::kFloat32, p.n * p.k);
    dequantize(p.q_view(), 32, p.sz_view(),
               TensorView::contiguous(w.data(), DType::kFloat32, {p.n, p.k}),
               Options{Backend::kReference});
    for (int64_t r = 0; r < p.n; ++r) {
      for (int64_t c = 0; c < p.k; ++c) {
        ASSERT_FLOAT_EQ(w.get(r * p.k + c), float(p.dequantized(r, c))) << dtype_name(dtype);
      }
    }
  }
}

}  // namespace
}  // namespace int4mm::testing
