// The CPU backend on every ISA this machine has (forced through
// set_isa_override), against the float64 oracle: odd shapes, every dtype and
// group size, strided A and C, 1 and 2 threads, the tail tile, the large-M
// (k-blocked) path; dequantize against the reference bit for bit.
//
//   cmake --build build-cpu && ctest --test-dir build-cpu -L cpu
#include <tuple>

#include "cpu/cpu_isa.h"
#include "test_util.h"

namespace int4mm::testing {
namespace {

using detail::cpu::Isa;

std::vector<Isa> isas_present() {
  std::vector<Isa> v;
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAvx512Bf16, Isa::kAmx}) {
    if (int(isa) <= int(detail::cpu::detected_isa())) v.push_back(isa);
  }
  return v;
}

// Restores the automatic choice when a test ends, whatever happens.
struct IsaGuard {
  ~IsaGuard() { detail::cpu::clear_isa_override(); }
};

std::vector<uint8_t> pack_cpu(Problem& p) {
  const PackedShape shape = packed_shape(Backend::kCpu, p.n, p.k);
  std::vector<uint8_t> packed(size_t(shape.rows * shape.cols));
  convert_weight_to_int4pack(
      p.q_view(), TensorView::contiguous(packed.data(), DType::kUInt8, {shape.rows, shape.cols}),
      8, Options{Backend::kCpu});
  return packed;
}

// Written into C's row padding; exact in every float dtype.
constexpr float kGuard = -1536.0f;

// C = A @ W^T on the CPU backend with row strides lda >= k and ldc >= n.
HostArray run_mm(Problem& p, const std::vector<uint8_t>& packed, int64_t lda, int64_t ldc,
                 int threads) {
  HostArray a(p.dtype, p.m * lda);
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t l = 0; l < p.k; ++l) a.set(i * lda + l, p.a.get(i * p.k + l));
  }
  // Guard values in the padding of C: a kernel that writes past N shows up.
  HostArray c(p.dtype, p.m * ldc);
  for (int64_t i = 0; i < c.size(); ++i) c.set(i, kGuard);
  TensorView av = TensorView::contiguous(a.data(), p.dtype, {p.m, p.k});
  av.strides[0] = lda;
  TensorView cv = TensorView::contiguous(c.data(), p.dtype, {p.m, p.n});
  cv.strides[0] = ldc;
  const auto pv = TensorView::contiguous(const_cast<uint8_t*>(packed.data()), DType::kUInt8,
                                         {p.n, p.k / 2});
  weight_int4pack_mm(av, pv, p.group_size, p.sz_view(), cv, Options{Backend::kCpu, nullptr, threads});
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t j = p.n; j < ldc; ++j) {
      EXPECT_EQ(c.get(i * ldc + j), kGuard) << "C padding written at [" << i << "][" << j << "]";
    }
  }
  return c;
}

// (M, N, K), dtype, group_size.
using Case = std::tuple<std::tuple<int64_t, int64_t, int64_t>, DType, int64_t>;

class CpuIsaMatmul : public ::testing::TestWithParam<Case> {};

TEST_P(CpuIsaMatmul, EveryIsaMatchesOracle) {
  const auto [shape, dtype, group_size] = GetParam();
  const auto [m, n, k] = shape;
  if (k % group_size != 0) GTEST_SKIP() << "K % group_size != 0";
  // The largest problems (float64 oracle cost ~ M*N*K) are subsampled: one
  // dtype per group size, rotating, keeps the suite near a minute.
  const int dtype_index = int(dtype);
  const int group_index = group_size == 32 ? 0 : group_size == 64 ? 1 : group_size == 128 ? 2 : 3;
  if (m * n * k > 40'000'000 && (dtype_index + group_index + int(m)) % 3 != 0) {
    GTEST_SKIP() << "subsampled";
  }
  Problem p = make_problem(m, n, k, group_size, dtype, uint32_t(m * 7 + n * 3 + k));
  const Oracle o = oracle(p);
  const std::vector<uint8_t> packed = pack_cpu(p);
  IsaGuard guard;
  for (Isa isa : isas_present()) {
    detail::cpu::set_isa_override(isa);
    for (int threads : {1, 2}) {
      const std::string what = std::string(detail::cpu::isa_name(isa)) + " threads=" +
                               std::to_string(threads);
      // Dense rows with one thread, strided rows with two.
      const int64_t lda = threads == 1 ? k : k + 5, ldc = threads == 1 ? n : n + 3;
      const HostArray c = run_mm(p, packed, lda, ldc, threads);
      expect_matches_oracle(p, o, c, ldc, what);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    OddShapes, CpuIsaMatmul,
    ::testing::Combine(::testing::Combine(::testing::Values(1, 3, 17, 67),
                                          ::testing::Values(1, 7, 48, 4100),
                                          ::testing::Values(32, 64, 512, 4160)),
                       ::testing::ValuesIn(float_dtypes()), ::testing::ValuesIn(group_sizes())));

// PyTorch's own criterion on its own test shapes (test__int4_mm), every ISA.
TEST(CpuIsaMatmul, PyTorchCriterion) {
  IsaGuard guard;
  for (DType dtype : float_dtypes()) {
    Problem p = make_problem(32, 48, 256, 128, dtype, 5, /*torch_style=*/true);
    const std::vector<uint8_t> packed = pack_cpu(p);
    for (Isa isa : isas_present()) {
      detail::cpu::set_isa_override(isa);
      const HostArray c = run_mm(p, packed, p.k, p.n, 2);
      EXPECT_LT(mean_relative_error_vs_unquantized(p, c), 0.05)
          << detail::cpu::isa_name(isa) << " " << dtype_name(dtype);
    }
  }
}

// The BF16 kernels: VDPBF16PS (bfloat16, M = 1, ISA avx512_bf16) and AMX
// (every M; float16 and float32 rows split into 2 and 3 bfloat16 rows,
// float32 in two tile sub-blocks at M = 8; n = 53: a pair of tiles, then a
// tail): every dtype and group size, a strided A.
TEST(CpuIsaMatmul, Bf16KernelsAtSmallM) {
  IsaGuard guard;
  for (DType dtype : float_dtypes()) {
    for (int64_t m : {1, 2, 8}) {
      for (int64_t group_size : group_sizes()) {
        Problem p = make_problem(m, 53, 1024, group_size, dtype, uint32_t(group_size + m));
        const Oracle o = oracle(p);
        const std::vector<uint8_t> packed = pack_cpu(p);
        for (Isa isa : isas_present()) {
          detail::cpu::set_isa_override(isa);
          expect_matches_oracle(p, o, run_mm(p, packed, p.k + 2, p.n, 2), p.n,
                                std::string(detail::cpu::isa_name(isa)) + " M=" +
                                    std::to_string(m) + " " + dtype_name(dtype));
        }
      }
    }
  }
}

TEST(CpuDequantize, MatchesReferenceBitForBit) {
  for (DType dtype : float_dtypes()) {
    for (int64_t n : {1, 7, 48, 53}) {
      Problem p = make_problem(1, n, 512, 64, dtype, uint32_t(n));
      const std::vector<uint8_t> packed = pack_cpu(p);
      HostArray want(DType::kFloat32, n * p.k), got(DType::kFloat32, n * p.k);
      dequantize(p.q_view(), p.group_size, p.sz_view(),
                 TensorView::contiguous(want.data(), DType::kFloat32, {n, p.k}),
                 Options{Backend::kReference});
      dequantize(TensorView::contiguous(const_cast<uint8_t*>(packed.data()), DType::kUInt8,
                                        {n, p.k / 2}),
                 p.group_size, p.sz_view(),
                 TensorView::contiguous(got.data(), DType::kFloat32, {n, p.k}),
                 Options{Backend::kCpu});
      EXPECT_EQ(got.bytes, want.bytes) << dtype_name(dtype) << " n=" << n;
    }
  }
}

TEST(CpuIsa, NamesRoundTripAndUnknownIsAnError) {
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAvx512Bf16, Isa::kAmx}) {
    EXPECT_EQ(detail::cpu::parse_isa(detail::cpu::isa_name(isa)), isa);
  }
  expect_error([] { detail::cpu::parse_isa("sse9"); },
               "cpu: INT4MM_CPU_ISA must be scalar, avx2, avx512, avx512_bf16 or amx, got 'sse9'");
}

TEST(CpuIsa, ForcingAnAbsentIsaIsAnError) {
  IsaGuard guard;
  if (detail::cpu::detected_isa() == Isa::kAmx) {
    GTEST_SKIP() << "this CPU has every ISA the backend knows";
  }
  expect_error([] { detail::cpu::set_isa_override(Isa::kAmx); },
               "asks for ISA amx but this CPU supports at most");
}

}  // namespace
}  // namespace int4mm::testing
