// The CUDA backend against the float64 oracle and the host-side packer.
// Every kernel (tensor-core GEMV, float32 GEMV, dequantize + cuBLAS, the
// Metal-port baseline) on odd shapes, every dtype and group size; GPU packing
// byte for byte against pack_host; errors; streams.
//
//   ctest -L cuda --output-on-failure
//   compute-sanitizer --tool memcheck build/tests/test_cuda
//   compute-sanitizer --tool racecheck build/tests/test_cuda --gtest_filter='*Kernels*'
#include <cuda_runtime.h>

#include <memory>
#include <string>
#include <utility>

#include "core/check.h"
#include "cuda/cuda_check.h"
#include "cuda/cuda_internal.h"
#include "test_util.h"

namespace int4mm::detail::cuda {
// Readable test names: the kernel's name, not its bytes.
inline void PrintTo(MmKernel kernel, std::ostream* os) { *os << kernel_name(kernel); }
inline void PrintTo(const GemvShape& s, std::ostream* os) {
  *os << "{tiles=" << s.tiles << ", steps=" << s.steps << ", warps=" << s.warps << ", staged_a=" << s.staged_a
      << ", scaled_w=" << s.scaled_w << ", buffers=" << s.buffers << "}";
}
}  // namespace int4mm::detail::cuda

namespace int4mm::testing {
namespace {

using detail::cuda::MmKernel;

#define SKIP_WITHOUT_GPU()                                                              \
  do {                                                                                  \
    if (!backend_available(Backend::kCuda)) {                                           \
      GTEST_SKIP() << "no CUDA device on this machine: CUDA test skipped (it runs on a GPU)"; \
    }                                                                                   \
  } while (0)

void check(cudaError_t status, const char* what) {
  ASSERT_EQ(status, cudaSuccess) << what << ": " << cudaGetErrorString(status);
}

// Device memory holding a copy of host bytes.
struct DeviceBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;

  // Both constructors leave the buffer ready for work on any stream: the
  // memset, and a copy from pageable memory (which may return before its DMA
  // lands), run on the legacy default stream, which a non-blocking stream
  // does not wait for (the chained-calls test once read the NaN poison).
  explicit DeviceBuffer(size_t n, int fill = 0xff) : bytes(std::max<size_t>(n, 1)) {
    check(cudaMalloc(&ptr, bytes), "cudaMalloc");
    check(cudaMemset(ptr, fill, bytes), "cudaMemset");  // poison: 0xff.. is NaN in every float dtype
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  }
  DeviceBuffer(const void* host, size_t n) : DeviceBuffer(n) {
    check(cudaMemcpy(ptr, host, n, cudaMemcpyHostToDevice), "cudaMemcpy H2D");
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  template <typename T>
  std::vector<T> to_host(size_t count) const {
    std::vector<T> out(count);
    check(cudaMemcpy(out.data(), ptr, count * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
    return out;
  }
};

TensorView on_gpu(TensorView v, const DeviceBuffer& buffer) {
  v.data = buffer.ptr;
  v.device = Device::cuda(0);
  return v;
}

// --- packing ------------------------------------------------------------------

class CudaPacking : public ::testing::TestWithParam<std::tuple<int64_t, int64_t>> {};

TEST_P(CudaPacking, MatchesHostPackerByteForByteAndRoundTrips) {
  SKIP_WITHOUT_GPU();
  const auto [n, k] = GetParam();
  Problem p = make_problem(1, n, k, 32, DType::kFloat16, uint32_t(n + k));
  const PackedShape shape = packed_shape(Backend::kCuda, n, k);
  const size_t packed_bytes = size_t(shape.rows * shape.cols);
  std::vector<uint8_t> expected(packed_bytes);
  detail::cuda::pack_host(p.q.data(), n, k, expected.data());

  std::vector<int32_t> q32(size_t(n * k));
  detail::wire_to_int32(p.q.data(), n, k, q32.data());
  DeviceBuffer wire(p.q.data(), p.q.size());
  DeviceBuffer int32(q32.data(), q32.size() * 4);
  const TensorView packed_view =
      TensorView::contiguous(nullptr, DType::kUInt8, {shape.rows, shape.cols}, Device::cuda(0));

  for (const bool from_int32 : {false, true}) {
    DeviceBuffer packed(packed_bytes, 0x5a);
    const TensorView q_view = from_int32
        ? on_gpu(TensorView::contiguous(nullptr, DType::kInt32, {n, k}), int32)
        : on_gpu(p.q_view(), wire);
    convert_weight_to_int4pack(q_view, on_gpu(packed_view, packed), 8);
    EXPECT_EQ(packed.to_host<uint8_t>(packed_bytes), expected) << "from_int32=" << from_int32;

    DeviceBuffer back_wire(p.q.size());
    unpack(on_gpu(packed_view, packed), on_gpu(p.q_view(), back_wire));
    EXPECT_EQ(back_wire.to_host<uint8_t>(p.q.size()), p.q);
    DeviceBuffer back_int32(q32.size() * 4);
    unpack(on_gpu(packed_view, packed),
           on_gpu(TensorView::contiguous(nullptr, DType::kInt32, {n, k}), back_int32));
    EXPECT_EQ(back_int32.to_host<int32_t>(q32.size()), q32);
  }
}

INSTANTIATE_TEST_SUITE_P(OddShapes, CudaPacking,
                         ::testing::Combine(::testing::Values(1, 7, 16, 19, 48, 4100),
                                            ::testing::Values(32, 64, 96, 4160)));

TEST(CudaPacking, OutOfRangeValueIsAnError) {
  SKIP_WITHOUT_GPU();
  std::vector<int32_t> q(3 * 64, 4);
  q[2 * 64 + 33] = 16;
  DeviceBuffer q_dev(q.data(), q.size() * 4);
  const PackedShape shape = packed_shape(Backend::kCuda, 3, 64);
  DeviceBuffer packed(size_t(shape.rows * shape.cols));
  expect_error(
      [&] {
        convert_weight_to_int4pack(
            on_gpu(TensorView::contiguous(nullptr, DType::kInt32, {3, 64}), q_dev),
            on_gpu(TensorView::contiguous(nullptr, DType::kUInt8, {shape.rows, shape.cols}), packed));
      },
      "convert_weight_to_int4pack: q values must be in 0..15, got 16 at q[2][33]");
}

// --- matmul -------------------------------------------------------------------

// Uploads a problem, packs it on the GPU, and runs one kernel.
struct GpuProblem {
  Problem& p;
  DeviceBuffer a, q, sz, packed, c;
  PackedShape shape;

  explicit GpuProblem(Problem& problem, int64_t ldc)
      : p(problem),
        a(p.a.data(), p.a.bytes.size()),
        q(p.q.data(), p.q.size()),
        sz(p.sz.data(), p.sz.bytes.size()),
        packed(size_t(packed_shape(Backend::kCuda, p.n, p.k).rows *
                      packed_shape(Backend::kCuda, p.n, p.k).cols)),
        c(size_t(std::max<int64_t>(p.m * ldc, 1) * dtype_size(p.dtype))),
        shape(packed_shape(Backend::kCuda, p.n, p.k)) {
    convert_weight_to_int4pack(on_gpu(p.q_view(), q), packed_view());
    // The uploads and the packing ran on the legacy default stream; tests
    // then run kernels on their own non-blocking streams, which do not wait
    // for it (under compute-sanitizer a gemm_mma test read half-packed
    // weights before this).
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  }

  TensorView packed_view() const {
    return on_gpu(TensorView::contiguous(nullptr, DType::kUInt8, {shape.rows, shape.cols}), packed);
  }

  detail::MmArgs args(int64_t ldc, const Options& options) const {
    return {p.dtype, a.ptr, p.k, static_cast<const uint8_t*>(packed.ptr), sz.ptr, c.ptr, ldc,
            p.m, p.n, p.k, p.group_size, &options};
  }

  HostArray result(int64_t ldc) const {
    HostArray out(p.dtype, std::max<int64_t>(p.m * ldc, 1));
    out.bytes = c.to_host<uint8_t>(out.bytes.size());
    return out;
  }
};

using Shape = std::tuple<int64_t, int64_t, int64_t>;  // m, n, k

class CudaKernels
    : public ::testing::TestWithParam<std::tuple<MmKernel, Shape, DType, int64_t>> {};

TEST_P(CudaKernels, MatchOracle) {
  SKIP_WITHOUT_GPU();
  const auto [kernel, shape, dtype, group_size] = GetParam();
  const auto [m, n, k] = shape;
  if (k % group_size != 0) GTEST_SKIP() << "K=" << k << " is not a multiple of " << group_size;
  Problem p = make_problem(m, n, k, group_size, dtype, uint32_t(m * 7 + n * 3 + k));
  const int64_t ldc = n + 5;  // strided C: the kernels must honour ldc
  GpuProblem gpu(p, ldc);
  cudaStream_t stream;
  check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  const Options options{Backend::kCuda, stream};
  const detail::MmArgs args = gpu.args(ldc, options);
  if (!detail::cuda::supports(kernel, args)) {
    cudaStreamDestroy(stream);
    GTEST_SKIP() << detail::cuda::kernel_name(kernel) << " does not take M=" << m << " "
                 << dtype_name(dtype);
  }
  detail::cuda::mm_with(kernel, args);
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  check(cudaStreamDestroy(stream), "cudaStreamDestroy");
  expect_matches_oracle(p, oracle(p), gpu.result(ldc), ldc, detail::cuda::kernel_name(kernel));
}

// gemm_mma_m40_n2050_k2048_bfloat16_g128: compute-sanitizer runs filter on these.
std::string case_name(const ::testing::TestParamInfo<CudaKernels::ParamType>& param) {
  const auto [kernel, shape, dtype, group_size] = param.param;
  const auto [m, n, k] = shape;
  return detail::concat(detail::cuda::kernel_name(kernel), "_m", m, "_n", n, "_k", k, "_",
                        dtype_name(dtype), "_g", group_size);
}

INSTANTIATE_TEST_SUITE_P(
    OddShapes, CudaKernels,
    ::testing::Combine(
        ::testing::Values(MmKernel::kGemvMma, MmKernel::kGemvSimt, MmKernel::kGemmMma,
                          MmKernel::kGemmWgmma, MmKernel::kDequantGemm),
        ::testing::Values(Shape{1, 4100, 4160}, Shape{3, 48, 4160}, Shape{4, 1, 64},
                          Shape{8, 19, 256}, Shape{9, 7, 4160}, Shape{17, 48, 512},
                          Shape{32, 99, 96}, Shape{40, 2050, 2048}, Shape{67, 48, 4160},
                          Shape{130, 300, 1024}, Shape{256, 4100, 512}, Shape{300, 520, 320}),
        ::testing::ValuesIn(float_dtypes()), ::testing::ValuesIn(group_sizes())),
    case_name);

// gemv_mma's every compiled shape (gemv_built in dispatch.cu: tiles per
// block x steps per chunk x warps x A direct or staged x weights folded per
// group or scaled), which dispatch picks by M, N, group size and alignment:
// N leaves the last block partly empty, K ends inside a chunk and gives some
// warps one chunk more than others (K = 4736: 18.5 chunks of 4 steps, 37
// of 2, so the 8 warps run 2-5 chunks each through the same registers), M
// leaves staged rows to zero-fill.
using detail::cuda::GemvShape;
class GemvShapes : public ::testing::TestWithParam<std::tuple<GemvShape, Shape, DType, int64_t>> {};

TEST_P(GemvShapes, MatchOracle) {
  SKIP_WITHOUT_GPU();
  const auto [gemv, shape, dtype, group_size] = GetParam();
  const auto [m, n, k] = shape;
  if (k % group_size != 0 || gemv.steps * 64 % group_size != 0) GTEST_SKIP() << "no such shape for this group";
  if (m > 8 && gemv.tiles == 1) GTEST_SKIP() << "M = 9..16 takes 2 or 4 tiles";
  Problem p = make_problem(m, n, k, group_size, dtype, uint32_t(gemv.tiles + gemv.steps + m * 7 + n * 3 + k));
  const int64_t ldc = n + 3;
  GpuProblem gpu(p, ldc);
  const Options options{Backend::kCuda};
  detail::cuda::gemv_mma_with(gpu.args(ldc, options), gemv);
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  expect_matches_oracle(p, oracle(p), gpu.result(ldc), ldc, "gemv_mma");
}

std::string gemv_case_name(const ::testing::TestParamInfo<GemvShapes::ParamType>& param) {
  const auto [gemv, shape, dtype, group_size] = param.param;
  const auto [m, n, k] = shape;
  return detail::concat("t", gemv.tiles, "_s", gemv.steps, "_w", gemv.warps, gemv.staged_a ? "_staged" : "",
                        gemv.scaled_w ? "_scaled" : "", gemv.buffers == 2 ? "_x2" : "", "_m", m, "_n", n, "_k", k, "_",
                        dtype_name(dtype), "_g", group_size);
}

// Weights folded per group, A direct: 8 warps at every size.
INSTANTIATE_TEST_SUITE_P(
    OddShapes, GemvShapes,
    ::testing::Combine(::testing::Values(GemvShape{1, 2}, GemvShape{1, 4}, GemvShape{2, 2}, GemvShape{2, 4},
                                         GemvShape{4, 2}, GemvShape{4, 4}),
                       ::testing::Values(Shape{1, 100, 1280}, Shape{7, 40, 576}, Shape{13, 136, 1344},
                                         Shape{3, 72, 4736}),
                       ::testing::Values(DType::kFloat16, DType::kBFloat16),
                       ::testing::Values(int64_t(32), int64_t(64), int64_t(128), int64_t(256))),
    gemv_case_name);

INSTANTIATE_TEST_SUITE_P(
    Warps16, GemvShapes,
    ::testing::Combine(::testing::Values(GemvShape{4, 2, 16}),
                       ::testing::Values(Shape{1, 100, 1280}, Shape{7, 40, 576}, Shape{8, 300, 4160}),
                       ::testing::Values(DType::kFloat16, DType::kBFloat16), ::testing::Values(int64_t(128))),
    gemv_case_name);

// M <= 4 in blocks of 12 or 16 warps: fewer chunks than warps (1280 k),
// more (2816 k), and a K that ends inside a chunk (4736 k).
const auto kWideBlocksM4 = ::testing::Values(Shape{1, 100, 1280}, Shape{4, 72, 4736}, Shape{3, 40, 2816});
// 16 warps with 1 tile (M <= 4, group 128, two blocks per SM): 1280 k in
// 10 chunks leaves 6 warps without one, 4736 k ends inside a chunk.
INSTANTIATE_TEST_SUITE_P(
    Warps16OneTile, GemvShapes,
    ::testing::Combine(::testing::Values(GemvShape{1, 2, 16}), kWideBlocksM4,
                       ::testing::Values(DType::kFloat16, DType::kBFloat16), ::testing::Values(int64_t(128))),
    gemv_case_name);

// 12 warps (M <= 4, group 128): 1280 k in 10 or 5 chunks leaves 2-10 warps
// without one, 4736 k gives some warps 2 chunks of 4 steps and others 1.
INSTANTIATE_TEST_SUITE_P(
    Warps12, GemvShapes,
    ::testing::Combine(::testing::Values(GemvShape{1, 2, 12}, GemvShape{1, 4, 12}, GemvShape{2, 2, 12}), kWideBlocksM4,
                       ::testing::Values(DType::kFloat16, DType::kBFloat16), ::testing::Values(int64_t(128))),
    gemv_case_name);
// Group 64: 1 tile of 2 steps (two groups a chunk).
INSTANTIATE_TEST_SUITE_P(
    Warps12Group64, GemvShapes,
    ::testing::Combine(::testing::Values(GemvShape{1, 2, 12}), kWideBlocksM4,
                       ::testing::Values(DType::kFloat16, DType::kBFloat16), ::testing::Values(int64_t(64))),
    gemv_case_name);

// Scaled weights up to M = 8, per group size; staged A (group 128): the
// chunks of 33 64-k steps fall unevenly on the warps, the staged rows past
// M are zero-filled.
const auto kScaledM8 = ::testing::Values(Shape{1, 100, 1280}, Shape{5, 40, 1280}, Shape{8, 136, 4224});
INSTANTIATE_TEST_SUITE_P(
    Scaled8Group32, GemvShapes,
    ::testing::Combine(::testing::Values(GemvShape{1, 2, 8, false, true}, GemvShape{2, 2, 8, false, true}),
                       kScaledM8, ::testing::Values(DType::kFloat16, DType::kBFloat16), ::testing::Values(int64_t(32))),
    gemv_case_name);
INSTANTIATE_TEST_SUITE_P(
    Scaled8Group64, GemvShapes,
    ::testing::Combine(::testing::Values(GemvShape{1, 4, 8, false, true}, GemvShape{2, 4, 8, false, true},
                                         GemvShape{2, 2, 8, false, true}, GemvShape{4, 2, 8, false, true}),
                       kScaledM8, ::testing::Values(DType::kFloat16, DType::kBFloat16), ::testing::Values(int64_t(64))),
    gemv_case_name);
INSTANTIATE_TEST_SUITE_P(
    Scaled8Group128, GemvShapes,
    ::testing::Combine(::testing::Values(GemvShape{4, 2, 8, false, true}, GemvShape{2, 4, 8, true, true},
                                         GemvShape{2, 2, 16, true, true}),
                       kScaledM8, ::testing::Values(DType::kFloat16, DType::kBFloat16),
                       ::testing::Values(int64_t(128))),
    gemv_case_name);

// Scaled weights at M = 9..16 (group 64 / 128): 16 warps, 2 or 4 tiles, A
// direct or staged; 8 warps, 4 tiles, A staged.
const auto kScaledM16 = ::testing::Values(Shape{9, 40, 1280}, Shape{13, 136, 4224}, Shape{16, 300, 4352});
INSTANTIATE_TEST_SUITE_P(
    Scaled16Group64, GemvShapes,
    ::testing::Combine(::testing::Values(GemvShape{2, 2, 16, false, true}, GemvShape{4, 2, 16, false, true}),
                       kScaledM16, ::testing::Values(DType::kFloat16, DType::kBFloat16),
                       ::testing::Values(int64_t(64))),
    gemv_case_name);
INSTANTIATE_TEST_SUITE_P(
    Scaled16Group128, GemvShapes,
    ::testing::Combine(::testing::Values(GemvShape{2, 2, 16, false, true}, GemvShape{4, 2, 16, false, true},
                                         GemvShape{2, 2, 16, true, true}, GemvShape{4, 2, 16, true, true},
                                         GemvShape{4, 2, 8, true, true}),
                       kScaledM16, ::testing::Values(DType::kFloat16, DType::kBFloat16),
                       ::testing::Values(int64_t(128))),
    gemv_case_name);

// Folded with A staged (group 128, 2 tiles; 16 warps, or 8 at M = 9..16):
// the chunk's tiles one after another, one m-tile up to M = 8 and two up
// to 16.
INSTANTIATE_TEST_SUITE_P(
    Folded8Staged, GemvShapes,
    ::testing::Combine(::testing::Values(GemvShape{2, 2, 16, true}), kScaledM8,
                       ::testing::Values(DType::kFloat16, DType::kBFloat16), ::testing::Values(int64_t(128))),
    gemv_case_name);
// (K = 640: 5 chunks, so that 11 of 16 warps (3 of 8) have none and add
// zeros.)
INSTANTIATE_TEST_SUITE_P(
    Folded16Staged, GemvShapes,
    ::testing::Combine(::testing::Values(GemvShape{2, 2, 16, true}, GemvShape{2, 2, 8, true}),
                       ::testing::Values(Shape{9, 40, 1280}, Shape{13, 136, 4224}, Shape{16, 300, 4352},
                                         Shape{12, 72, 640}),
                       ::testing::Values(DType::kFloat16, DType::kBFloat16), ::testing::Values(int64_t(128))),
    gemv_case_name);

// Two chunks a warp (2 steps; folded with 12 warps and 1 tile, or staged
// and scaled with 8 warps and 2 tiles, a last block of 1 at odd tile
// counts): each warp's chunk count odd or even (the loop runs two at a time
// and may stop after the first), fewer chunks than warps (1280 k: 10
// chunks), a last chunk cut by K (4768 k: 37.25 chunks).
INSTANTIATE_TEST_SUITE_P(
    TwoBuffers, GemvShapes,
    ::testing::Combine(::testing::Values(GemvShape{1, 2, 12, false, false, 2}, GemvShape{2, 2, 8, true, true, 2}),
                       ::testing::Values(Shape{1, 100, 1280}, Shape{4, 72, 4768}, Shape{3, 40, 6144}),
                       ::testing::Values(DType::kFloat16, DType::kBFloat16), ::testing::Values(int64_t(32))),
    gemv_case_name);
// Group 64 (folded only): 4736 k is 37 chunks.
INSTANTIATE_TEST_SUITE_P(
    TwoBuffersGroup64, GemvShapes,
    ::testing::Combine(::testing::Values(GemvShape{1, 2, 12, false, false, 2}),
                       ::testing::Values(Shape{1, 100, 1280}, Shape{4, 72, 4736}, Shape{3, 40, 6144}),
                       ::testing::Values(DType::kFloat16, DType::kBFloat16), ::testing::Values(int64_t(64))),
    gemv_case_name);

// bf16's folded kernels take the weights as 128 + q and subtract 136 x sum A
// in the fold, in float32: with A all positive (PyTorch's test draws A and W
// from U[0, 1)) that sum is largest against the result, and deep K adds up
// the most roundings. A direct and staged, one tile at a time and several.
TEST(CudaKernels, GemvFoldedBiasWithPositiveActivations) {
  SKIP_WITHOUT_GPU();
  const std::pair<GemvShape, int64_t> cases[] = {
      {GemvShape{1, 2}, 4},           {GemvShape{4, 2, 16}, 4},      {GemvShape{2, 2, 16, true}, 8},
      {GemvShape{2, 2, 16, true}, 16}, {GemvShape{2, 2, 8, true}, 16}};
  for (const auto& [gemv, m] : cases) {
    SCOPED_TRACE(::testing::PrintToString(gemv) + " M=" + std::to_string(m));
    const int64_t n = 136, k = 16384;
    Problem p = make_problem(m, n, k, 128, DType::kBFloat16, 11, /*torch_style=*/true);
    const int64_t ldc = n;
    GpuProblem gpu(p, ldc);
    const Options options{Backend::kCuda};
    detail::cuda::gemv_mma_with(gpu.args(ldc, options), gemv);
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    expect_matches_oracle(p, oracle(p), gpu.result(ldc), ldc, "gemv_mma");
  }
}

// A shape gemv_mma has no kernel for is an error naming it, not a launch
// (checked before any device work: runs without a GPU too).
TEST(CudaKernels, GemvShapeOutOfRange) {
  const Options options{Backend::kCuda};
  detail::MmArgs args{DType::kBFloat16, nullptr, 256, nullptr, nullptr, nullptr, 64, 12, 64, 256, 256, &options};
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{1, 4}); },
               "gemv_mma_with: no kernel for tiles=1, steps=4, warps=8, staged_a=false, scaled_w=false, buffers=1 "
               "at M=12, group_size=256");
  args.lda = 260;  // staged A takes 16-byte aligned rows only
  args.group_size = 128;
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{2, 2, 16, true, true}); },
               "gemv_mma_with: staged A needs 16-byte aligned rows of A (lda % 8 == 0, A 16-byte aligned), "
               "got lda=260");
  args.lda = 256;
  // Staged A: scaled, or folded with 2 tiles and 2 steps, 16 warps or (M =
  // 9..16) 8 (group 128).
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{2, 4, 16, true}); },
               "steps=4, warps=16, staged_a=true, scaled_w=false, buffers=1 at M=12");
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{4, 2, 16, true}); },
               "tiles=4, steps=2, warps=16, staged_a=true, scaled_w=false, buffers=1 at M=12");
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{2, 4, 8, true}); },
               "tiles=2, steps=4, warps=8, staged_a=true, scaled_w=false, buffers=1 at M=12");
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{4, 2, 8, true}); },
               "tiles=4, steps=2, warps=8, staged_a=true, scaled_w=false, buffers=1 at M=12");
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{2, 2, 8, true, true}); },
               "warps=8, staged_a=true, scaled_w=true, buffers=1 at M=12");
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{4, 2, 8, false, true}); },
               "tiles=4, steps=2, warps=8, staged_a=false, scaled_w=true, buffers=1 at M=12");
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{2, 4, 16, false, true}); },
               "steps=4, warps=16, staged_a=false, scaled_w=true, buffers=1 at M=12");
  args.group_size = 32;  // folded at 16 rows (scaled measured slower)
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{2, 2, 16, false, true}); },
               "tiles=2, steps=2, warps=16, staged_a=false, scaled_w=true, buffers=1 at M=12, group_size=32");
  args.group_size = 256;
  args.m = 4;
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{2, 4, 8, false, true}); },
               "scaled_w=true, buffers=1 at M=4, group_size=256");
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{2, 2}); },
               "tiles=2, steps=2, warps=8, staged_a=false, scaled_w=false, buffers=1 at M=4, group_size=256");
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{3, 4}); }, "tiles=3");
  args.group_size = 128;
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{2, 2, 16}); },
               "tiles=2, steps=2, warps=16, staged_a=false, scaled_w=false, buffers=1 at M=4");
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{2, 2, 8, false, true}); },
               "tiles=2, steps=2, warps=8, staged_a=false, scaled_w=true, buffers=1 at M=4, group_size=128");
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{2, 2, 12, true}); },
               "tiles=2, steps=2, warps=12, staged_a=true, scaled_w=false, buffers=1 at M=4, group_size=128");
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{4, 2, 8, true}); },
               "tiles=4, steps=2, warps=8, staged_a=true, scaled_w=false, buffers=1 at M=4, group_size=128");
  args.m = 12;
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{4, 2, 16}); },
               "warps=16, staged_a=false, scaled_w=false, buffers=1 at M=12");
  args.m = 8;
  args.group_size = 64;
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{4, 2, 16}); },
               "warps=16, staged_a=false, scaled_w=false, buffers=1 at M=8, group_size=64");
  // 12 warps: folded, M <= 4, 1 tile with 2 or 4 steps or 2 tiles with 2
  // (group 128), 1 tile with 2 (group 64).
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{2, 2, 12}); },
               "tiles=2, steps=2, warps=12, staged_a=false, scaled_w=false, buffers=1 at M=8, group_size=64");
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{1, 2, 12}); },
               "tiles=1, steps=2, warps=12, staged_a=false, scaled_w=false, buffers=1 at M=8, group_size=64");
  args.m = 4;
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{2, 2, 12}); }, "warps=12, staged_a=false, "
               "scaled_w=false, buffers=1 at M=4, group_size=64");
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{1, 4, 12}); },
               "tiles=1, steps=4, warps=12, staged_a=false, scaled_w=false, buffers=1 at M=4, group_size=64");
  args.group_size = 256;
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{2, 4, 12}); }, "warps=12, staged_a=false, "
               "scaled_w=false, buffers=1 at M=4, group_size=256");
  args.group_size = 128;
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{4, 2, 12}); }, "tiles=4, steps=2, warps=12");
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{2, 4, 12}); }, "tiles=2, steps=4, warps=12");
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{2, 2, 12, false, true}); },
               "warps=12, staged_a=false, scaled_w=true, buffers=1 at M=4");
  // Two chunks a warp, M <= 4, 2 steps: folded, 12 warps, 1 tile, group 32
  // or 64; staged and scaled, 8 warps, 2 tiles, group 32. Nothing but 1 or
  // 2 buffers.
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{1, 2, 12, false, false, 2}); },
               "tiles=1, steps=2, warps=12, staged_a=false, scaled_w=false, buffers=2 at M=4, group_size=128");
  args.group_size = 64;
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{2, 2, 8, true, true, 2}); },
               "tiles=2, steps=2, warps=8, staged_a=true, scaled_w=true, buffers=2 at M=4, group_size=64");
  args.group_size = 32;
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{2, 2, 8, false, true, 2}); },
               "tiles=2, steps=2, warps=8, staged_a=false, scaled_w=true, buffers=2 at M=4");
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{1, 2, 8, true, true, 2}); },
               "tiles=1, steps=2, warps=8, staged_a=true, scaled_w=true, buffers=2 at M=4");
  args.m = 8;
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{2, 2, 8, true, true, 2}); },
               "staged_a=true, scaled_w=true, buffers=2 at M=8");
  args.m = 4;
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{2, 2, 12, false, false, 2}); },
               "tiles=2, steps=2, warps=12, staged_a=false, scaled_w=false, buffers=2 at M=4");
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{1, 2, 8, false, false, 2}); },
               "warps=8, staged_a=false, scaled_w=false, buffers=2 at M=4");
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{1, 2, 12, false, true, 2}); },
               "staged_a=false, scaled_w=true, buffers=2 at M=4");
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{1, 2, 12, false, false, 3}); }, "buffers=3 at M=4");
  args.m = 5;
  expect_error([&] { detail::cuda::gemv_mma_with(args, GemvShape{1, 2, 12, false, false, 2}); },
               "scaled_w=false, buffers=2 at M=5, group_size=32");
}

// gemm_wgmma's every configuration (rows per block x one block per tile,
// persistent grid with a stream-K last wave, or tiles split evenly over
// clusters), which dispatch picks by M and shape: odd M, N and K tails,
// group 32; stream-K splits tiles over blocks (their partials meet in a
// workspace), clusters split them over their blocks (they meet in shared
// memory: on an H100, 4000 x 1152 in clusters of 3; 4000 x 640 at 70 rows
// in pairs at 64 rows, in clusters of 3 at 128 / 256).
using detail::cuda::WgmmaSplit;
using WgmmaCase = std::tuple<int, WgmmaSplit, Shape, DType, int64_t>;
class WgmmaConfigs : public ::testing::TestWithParam<WgmmaCase> {};

// One configuration of gemm_wgmma (weight_rows per block: 128, or 256 in
// gemm_wgmma_ws) against the oracle.
void expect_wgmma_case_matches_oracle(const WgmmaCase& param, int weight_rows) {
  const auto [tokens, split, shape, dtype, group_size] = param;
  const auto [m, n, k] = shape;
  if (k % group_size != 0) GTEST_SKIP() << "K=" << k << " is not a multiple of " << group_size;
  Problem p = make_problem(m, n, k, group_size, dtype, uint32_t(tokens + m * 7 + n * 3 + k));
  // C's 16-byte store path needs ldc % 8 == 0: n + 8 takes it where N % 8 == 0, n + 5 never.
  const bool vector_c = split == WgmmaSplit::kNone || (split == WgmmaSplit::kCluster && tokens > 32);
  const int64_t ldc = n + (vector_c ? 8 : 5);
  GpuProblem gpu(p, ldc);
  const Options options{Backend::kCuda};
  const detail::MmArgs args = gpu.args(ldc, options);
  if (!detail::cuda::supports(MmKernel::kGemmWgmma, args)) {
    GTEST_SKIP() << "gemm_wgmma needs a compute capability 9.0 GPU";
  }
  const detail::cuda::WgmmaGrid grid = detail::cuda::gemm_wgmma_grid(args, tokens, split, weight_rows);
  SCOPED_TRACE(detail::concat("grid: ", grid.blocks, " blocks, ", grid.dp_tiles, " whole tiles, clusters of ",
                              grid.cluster, ", ", grid.weight_rows, " weight rows per tile"));
  EXPECT_EQ(grid.weight_rows, weight_rows);
  detail::cuda::gemm_wgmma_with(args, tokens, split, weight_rows);
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  expect_matches_oracle(p, oracle(p), gpu.result(ldc), ldc, "gemm_wgmma");
}

TEST_P(WgmmaConfigs, MatchOracle) {
  SKIP_WITHOUT_GPU();
  expect_wgmma_case_matches_oracle(GetParam(), 128);
}

std::string wgmma_case_name(const ::testing::TestParamInfo<WgmmaCase>& param) {
  const auto [tokens, split, shape, dtype, group_size] = param.param;
  const auto [m, n, k] = shape;
  const char* split_name = split == WgmmaSplit::kNone      ? "_direct"
                           : split == WgmmaSplit::kStreamK ? "_streamk"
                                                           : "_cluster";
  return detail::concat("t", tokens, split_name, "_m", m, "_n", n, "_k", k, "_", dtype_name(dtype), "_g", group_size);
}

INSTANTIATE_TEST_SUITE_P(
    OddShapes, WgmmaConfigs,
    ::testing::Combine(::testing::Values(16, 32, 64, 128, 256),
                       ::testing::Values(WgmmaSplit::kNone, WgmmaSplit::kStreamK, WgmmaSplit::kCluster),
                       ::testing::Values(Shape{70, 300, 1152}, Shape{300, 4100, 640}, Shape{5, 136, 96},
                                         Shape{130, 72, 480}, Shape{5, 4000, 1152}, Shape{70, 4000, 640},
                                         Shape{70, 1030, 640}),
                       ::testing::Values(DType::kFloat16, DType::kBFloat16),
                       ::testing::Values(int64_t(32), int64_t(128))),
    wgmma_case_name);

// More tiles than SMs at 128 / 256 rows, where gemm_wgmma_ws's copy thread
// runs on into a block's next tile while its MMA warps finish one: with
// K = 2..3 steps every block of the stream-K grid crosses tiles (after a
// whole tile at 128 rows), and the persistent grid of whole tiles gives
// each of its blocks (one per SM) 1-3 of the 297 / 165 tiles.
INSTANTIATE_TEST_SUITE_P(
    ManyTiles, WgmmaConfigs,
    ::testing::Combine(::testing::Values(128, 256), ::testing::Values(WgmmaSplit::kNone, WgmmaSplit::kStreamK),
                       ::testing::Values(Shape{1100, 4100, 160}, Shape{1100, 4100, 128}),
                       ::testing::Values(DType::kFloat16, DType::kBFloat16),
                       ::testing::Values(int64_t(32), int64_t(128))),
    wgmma_case_name);

// gemm_wgmma_ws with 256 weight rows per block (two halves of 128 that read
// one activation tile) at 64 activation rows, every split: N = 300 and
// 4100, where the last tile's second half lies wholly past N (its weights
// and scales zero-filled by the TMA unit), and 4000 (at M = 5, 16 tiles in
// clusters of 6 on an H100 SXM); K tails at group 32; 64 x 1024 x 4096,
// where stream-K splits each of 4 tiles over 32 blocks; 1100 x 4100 x 160,
// where the persistent grid's blocks (one per SM) take 2-3 of 306 tiles.
class WgmmaWideConfigs : public ::testing::TestWithParam<WgmmaCase> {};

TEST_P(WgmmaWideConfigs, MatchOracle) {
  SKIP_WITHOUT_GPU();
  expect_wgmma_case_matches_oracle(GetParam(), 256);
}

INSTANTIATE_TEST_SUITE_P(
    OddShapes, WgmmaWideConfigs,
    ::testing::Combine(::testing::Values(64),
                       ::testing::Values(WgmmaSplit::kNone, WgmmaSplit::kStreamK, WgmmaSplit::kCluster),
                       ::testing::Values(Shape{70, 300, 1152}, Shape{300, 4100, 640}, Shape{130, 72, 480},
                                         Shape{5, 4000, 1152}, Shape{70, 4000, 640}, Shape{64, 1024, 4096},
                                         Shape{1100, 4100, 160}),
                       ::testing::Values(DType::kFloat16, DType::kBFloat16),
                       ::testing::Values(int64_t(32), int64_t(128))),
    wgmma_case_name);

// 256 weight rows per block only in gemm_wgmma_ws at 33..64 activation
// rows: any other request is an error that names it, not a launch (checked
// before any device work: runs without a GPU too).
TEST(CudaKernels, WgmmaWideRowsOutOfRange) {
  const Options options{Backend::kCuda};
  detail::MmArgs args{DType::kBFloat16, nullptr, 640, nullptr, nullptr, nullptr, 1030, 70, 1030, 640, 128, &options};
  // N % 4 != 0: gemm_wgmma_ws's tensor maps cannot take it.
  expect_error([&] { detail::cuda::gemm_wgmma_with(args, 64, WgmmaSplit::kStreamK, 256); },
               "gemm_wgmma_with: weight_rows=256, tokens=64, n=1030: 256 weight rows per block run only in "
               "gemm_wgmma_ws at tokens 33..64");
  args.n = args.ldc = 1028;
  expect_error([&] { detail::cuda::gemm_wgmma_grid(args, 16, WgmmaSplit::kStreamK, 256); },
               "weight_rows=256, tokens=16, n=1028");
  expect_error([&] { detail::cuda::gemm_wgmma_grid(args, 128, WgmmaSplit::kCluster, 256); },
               "weight_rows=256, tokens=128, n=1028");
  expect_error([&] { detail::cuda::gemm_wgmma_grid(args, 64, WgmmaSplit::kStreamK, 512); },
               "weight_rows=512, tokens=64, n=1028");
}

// Dispatch takes 256 weight rows (stream-K) at 64 activation rows where the
// 128-row tiles would split stream-K and the 256-row tiles give each block
// of one per SM at least 96 steps of 64 k: on an H100 SXM (132 SMs), the
// bench's 8192 x 28672 and 28672 x 8192 at M = 40 and 64 (14336 steps of
// 256-row tiles), not 5120 x 13824 (4320), 8192 x 8192 (clusters) or
// 14336 x 4096 (3584), nor M = 128 (128 rows). Planning only: the operands
// are 16-byte aligned placeholders, nothing is launched (the
// WgmmaWideConfigs cases run the kernel through the same launch).
TEST(CudaKernels, WgmmaWideRowsTakenByDispatch) {
  SKIP_WITHOUT_GPU();
  alignas(16) static const uint8_t placeholder[16] = {};
  const Options options{Backend::kCuda};
  // (K, N, M, weight rows)
  const std::tuple<int64_t, int64_t, int64_t, int> cases[] = {
      {8192, 28672, 64, 256}, {28672, 8192, 40, 256}, {5120, 13824, 64, 128}, {8192, 8192, 64, 128},
      {14336, 4096, 64, 128}, {28672, 8192, 128, 128}};
  for (const auto& [k, n, m, weight_rows] : cases) {
    SCOPED_TRACE(detail::concat(k, " x ", n, " at M = ", m));
    const detail::MmArgs args{DType::kBFloat16, placeholder, k, placeholder, placeholder, nullptr, n, m, n, k, 128,
                              &options};
    if (!detail::cuda::supports(MmKernel::kGemmWgmma, args)) {
      GTEST_SKIP() << "gemm_wgmma needs a compute capability 9.0 GPU";
    }
    if (detail::cuda::sm_count() != 132) GTEST_SKIP() << "the expected plans are an H100 SXM's (132 SMs)";
    const detail::cuda::WgmmaDispatch planned = detail::cuda::gemm_wgmma_dispatch(args);
    EXPECT_EQ(planned.weight_rows, weight_rows);
    if (weight_rows == 256) {
      EXPECT_EQ(planned.split, WgmmaSplit::kStreamK);
    }
  }
}

// The cluster split is taken where the tests above expect it (so that they
// test it): on an H100 SXM (132 SMs), 4000 x 640 at 70 rows of 128 per block
// is 32 tiles, so each tile is split over a cluster of 3 blocks (the fewest
// that put a block on >= 70% of the SMs; 10 steps of K: 3, 3 and 4), in
// gemm_wgmma_ws at 128 rows and in gemm_wgmma at 64.
TEST(CudaKernels, WgmmaClusterSplitTaken) {
  SKIP_WITHOUT_GPU();
  Problem p = make_problem(70, 4000, 640, 128, DType::kBFloat16, 7);
  GpuProblem gpu(p, 4000);
  const Options options{Backend::kCuda};
  const detail::MmArgs args = gpu.args(4000, options);
  if (!detail::cuda::supports(MmKernel::kGemmWgmma, args)) {
    GTEST_SKIP() << "gemm_wgmma needs a compute capability 9.0 GPU";
  }
  if (detail::cuda::sm_count() != 132) GTEST_SKIP() << "the expected split is an H100 SXM's (132 SMs)";
  const detail::cuda::WgmmaGrid grid = detail::cuda::gemm_wgmma_grid(args, 128, WgmmaSplit::kCluster);
  EXPECT_EQ(grid.blocks, 96);
  EXPECT_EQ(grid.dp_tiles, 0);
  EXPECT_EQ(grid.cluster, 3);
  EXPECT_TRUE(grid.copy_warps);
  EXPECT_TRUE(grid.pdl);     // one wave, one block fills an SM at 128 rows ...
  EXPECT_FALSE(grid.alone);  // ... without padding
  // At 64 rows: 64 tiles in pairs, in gemm_wgmma_ws (one block per SM).
  const detail::cuda::WgmmaGrid pairs = detail::cuda::gemm_wgmma_grid(args, 64, WgmmaSplit::kCluster);
  EXPECT_EQ(pairs.blocks, 128);
  EXPECT_EQ(pairs.cluster, 2);
  EXPECT_TRUE(pairs.copy_warps);
  EXPECT_TRUE(pairs.pdl);
  // At 32 rows two blocks of gemm_wgmma fit an SM: 96 tiles in pairs, more
  // blocks than SMs, so not padded.
  const detail::cuda::WgmmaGrid pairs_32 = detail::cuda::gemm_wgmma_grid(args, 32, WgmmaSplit::kCluster);
  EXPECT_EQ(pairs_32.blocks, 192);
  EXPECT_EQ(pairs_32.cluster, 2);
  EXPECT_FALSE(pairs_32.copy_warps);
  EXPECT_TRUE(pairs_32.pdl);
  EXPECT_FALSE(pairs_32.alone);
  const detail::cuda::WgmmaGrid stream_k = detail::cuda::gemm_wgmma_grid(args, 128, WgmmaSplit::kStreamK);
  EXPECT_EQ(stream_k.cluster, 1);
  EXPECT_FALSE(stream_k.pdl);  // its workspace is zeroed between calls
}

// Whole waves of 256-row tiles and a partial one: dispatch runs the whole
// waves' columns in one launch and the rest in 128-row tiles, a second
// launch over a range of the weights', scales' and C's columns. At 300 rows
// (2 tiles of 256 per column, 3 of 128), with N = 3/5 or 7/10 x SMs columns
// of tiles (the last one partial): one whole wave of SMs / 2 columns, the
// rest (3 x 1/10 or 1/5 of the SMs' count of tiles) split over clusters (on
// an H100 SXM, of 3 blocks: K = 384 gives each block 2 of the 6 steps) or
// one block per tile. Group 32 and 128, C with and without its 16-byte
// store path.
TEST(CudaKernels, WgmmaTailWaveTakesHalfTiles) {
  SKIP_WITHOUT_GPU();
  const int64_t sms = detail::cuda::sm_count();
  // (columns of tiles, dtype, group size, ldc - N)
  const std::tuple<int64_t, DType, int64_t, int64_t> cases[] = {{sms * 3 / 5, DType::kFloat16, 32, 4},
                                                                {sms / 2 + sms / 5, DType::kBFloat16, 128, 8}};
  for (const auto& [wide, dtype, group_size, pad] : cases) {
    const int64_t n = wide * 128 - 52, ldc = n + pad;
    SCOPED_TRACE(detail::concat("N ", n, ", ", dtype_name(dtype), ", group ", group_size, ", ldc ", ldc));
    Problem p = make_problem(300, n, 384, group_size, dtype, 13);
    GpuProblem gpu(p, ldc);
    const Options options{Backend::kCuda};
    const detail::MmArgs args = gpu.args(ldc, options);
    if (!detail::cuda::supports(MmKernel::kGemmWgmma, args)) {
      GTEST_SKIP() << "gemm_wgmma needs a compute capability 9.0 GPU";
    }
    EXPECT_EQ(detail::cuda::gemm_wgmma_dispatch(args).tail_column, sms / 2 * 128);
    detail::cuda::mm_with(MmKernel::kGemmWgmma, args);
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    expect_matches_oracle(p, oracle(p), gpu.result(ldc), ldc, "gemm_wgmma, two launches");
  }
}

// At 128 and 256 rows every grid, and at 64 rows every grid that splits
// tiles or has no more of them than SMs, runs gemm_wgmma_ws (its copies in a
// warpgroup of their own, by TMA) where the operands allow its tensor maps
// (N % 4 == 0, 16-byte aligned), so that the WgmmaConfigs cases test it
// there and gemm_wgmma beside it (N = 1030, 64 rows with many whole tiles,
// fewer rows).
TEST(CudaKernels, WgmmaCopyWarpsTaken) {
  SKIP_WITHOUT_GPU();
  for (const int64_t n : {4000, 1030}) {
    Problem p = make_problem(300, n, 640, 128, DType::kFloat16, 3);
    GpuProblem gpu(p, n);
    const Options options{Backend::kCuda};
    const detail::MmArgs args = gpu.args(n, options);
    if (!detail::cuda::supports(MmKernel::kGemmWgmma, args)) {
      GTEST_SKIP() << "gemm_wgmma needs a compute capability 9.0 GPU";
    }
    SCOPED_TRACE(detail::concat("N = ", n));
    for (const int tokens : {64, 128, 256}) {
      for (const WgmmaSplit split : {WgmmaSplit::kNone, WgmmaSplit::kStreamK, WgmmaSplit::kCluster}) {
        // At 64 rows, 32 x 5 whole tiles are more than the SMs of any GPU this runs on.
        const bool expected = n % 4 == 0 && (tokens > 64 || split != WgmmaSplit::kNone);
        const detail::cuda::WgmmaGrid grid = detail::cuda::gemm_wgmma_grid(args, tokens, split);
        EXPECT_EQ(grid.copy_warps, expected) << tokens << " rows, split " << int(split);
        EXPECT_EQ(grid.stage_steps, 1);
      }
    }
    EXPECT_FALSE(detail::cuda::gemm_wgmma_grid(args, 32, WgmmaSplit::kStreamK).copy_warps);
  }
}

// At 16 activation rows, a grid of at most one block per SM runs the kernel
// with stages of 4 steps, which needs no padding to be alone on its SM
// (the WgmmaConfigs cases at 16 rows, direct and in clusters, run it); the
// grids of several blocks per SM keep stages of 2, as 32 rows do.
TEST(CudaKernels, WgmmaLoneBlocksTakeLongStages) {
  SKIP_WITHOUT_GPU();
  Problem p = make_problem(5, 4000, 1152, 128, DType::kBFloat16, 5);
  GpuProblem gpu(p, 4000);
  const Options options{Backend::kCuda};
  const detail::MmArgs args = gpu.args(4000, options);
  if (!detail::cuda::supports(MmKernel::kGemmWgmma, args)) {
    GTEST_SKIP() << "gemm_wgmma needs a compute capability 9.0 GPU";
  }
  const detail::cuda::WgmmaGrid direct = detail::cuda::gemm_wgmma_grid(args, 16, WgmmaSplit::kNone);
  EXPECT_EQ(direct.blocks, 32);  // 32 tiles of 128 weight rows
  EXPECT_EQ(direct.stage_steps, 4);
  EXPECT_TRUE(direct.pdl);
  EXPECT_FALSE(direct.alone);  // alone without padding
  const detail::cuda::WgmmaGrid stream_k = detail::cuda::gemm_wgmma_grid(args, 16, WgmmaSplit::kStreamK);
  EXPECT_GT(stream_k.blocks, detail::cuda::sm_count());
  EXPECT_EQ(stream_k.stage_steps, 2);
  const detail::cuda::WgmmaGrid rows_32 = detail::cuda::gemm_wgmma_grid(args, 32, WgmmaSplit::kNone);
  EXPECT_EQ(rows_32.stage_steps, 2);
  EXPECT_TRUE(rows_32.alone);  // padded
  if (detail::cuda::sm_count() != 132) GTEST_SKIP() << "the expected clusters are an H100 SXM's (132 SMs)";
  const detail::cuda::WgmmaGrid clusters = detail::cuda::gemm_wgmma_grid(args, 16, WgmmaSplit::kCluster);
  EXPECT_EQ(clusters.blocks, 96);  // 32 clusters of 3
  EXPECT_EQ(clusters.cluster, 3);
  EXPECT_EQ(clusters.stage_steps, 4);
}

// Three calls in one stream, each reading the last one's C ([m, n], bf16) as
// its A (N = K), give what the same calls give with a synchronize after each:
// launches with PDL must wait before they read A or write C. `call(a, c)`
// launches one call on `stream`.
template <typename Call>
void expect_chained_calls_match_synchronized_ones(const Problem& p, cudaStream_t stream, Call call) {
  const size_t bytes = size_t(p.m * p.n) * 2;
  auto chain = [&](bool synchronized) {
    DeviceBuffer x(p.a.data(), bytes), y(bytes);
    for (int i = 0; i < 3; ++i) {
      const bool even = i % 2 == 0;
      call(even ? x : y, even ? y : x);
      if (synchronized) check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    }
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    return y.to_host<uint16_t>(size_t(p.m * p.n));
  };
  const std::vector<uint16_t> expected = chain(true);
  int non_finite = 0;
  for (uint16_t v : expected) non_finite += !std::isfinite(detail::bf16_to_float(v));
  EXPECT_EQ(non_finite, 0);
  EXPECT_EQ(chain(false), expected);
}

// Back-to-back gemm_wgmma calls, each reading the one before's output as its
// activations (and the third overwriting what the second reads), launched
// with PDL where the grid qualifies: the same bits as with the device
// synchronized between calls. Grids: one block per tile with stages of 4
// steps (16 rows), one block per tile padded to one per SM (32 rows), one
// block per tile in gemm_wgmma_ws (64, 128 and 256 rows), pairs in
// gemm_wgmma_ws (64 rows), clusters of 4 in gemm_wgmma_ws (128 rows; on an
// H100 SXM, 24 tiles). And stream-K grids at 16-128 rows, whose counters a
// kernel zeroes that lets the call's launch start early (zero_arrivals), in
// a workspace from the stream's pool that each call frees for the next: the
// same bits too, since a split tile's parts are added in block order
// whichever block arrives last (before v23 the 32- and 128-row cases
// differed in some bits).
TEST(CudaKernels, WgmmaChainedCallsMatchSynchronizedOnes) {
  SKIP_WITHOUT_GPU();
  const int64_t m = 70, n = 3072;
  Problem p = make_problem(m, n, n, 128, DType::kBFloat16, 11);
  GpuProblem gpu(p, n);
  cudaStream_t stream;
  check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  const Options options{Backend::kCuda, stream};
  auto args = [&](const DeviceBuffer& a, DeviceBuffer& c) {
    detail::MmArgs call = gpu.args(n, options);
    call.a = a.ptr;
    call.c = c.ptr;
    return call;
  };
  if (!detail::cuda::supports(MmKernel::kGemmWgmma, args(gpu.a, gpu.c))) {
    cudaStreamDestroy(stream);
    GTEST_SKIP() << "gemm_wgmma needs a compute capability 9.0 GPU";
  }
  for (const auto& config : {std::pair{16, WgmmaSplit::kNone}, std::pair{32, WgmmaSplit::kNone},
                             std::pair{64, WgmmaSplit::kNone}, std::pair{128, WgmmaSplit::kNone},
                             std::pair{256, WgmmaSplit::kNone}, std::pair{64, WgmmaSplit::kCluster},
                             std::pair{128, WgmmaSplit::kCluster}}) {
    const int tokens = config.first;
    const WgmmaSplit split = config.second;
    SCOPED_TRACE(detail::concat("tokens ", tokens, ", split ", int(split)));
    EXPECT_TRUE(detail::cuda::gemm_wgmma_grid(args(gpu.a, gpu.c), tokens, split).pdl);
    expect_chained_calls_match_synchronized_ones(p, stream, [&](const DeviceBuffer& a, DeviceBuffer& c) {
      detail::cuda::gemm_wgmma_with(args(a, c), tokens, split);
    });
  }
  for (const int tokens : {16, 32, 64, 128}) {
    SCOPED_TRACE(detail::concat("tokens ", tokens, ", stream-K"));
    const detail::cuda::WgmmaGrid grid =
        detail::cuda::gemm_wgmma_grid(args(gpu.a, gpu.c), tokens, WgmmaSplit::kStreamK);
    EXPECT_EQ(grid.cluster, 1);
    EXPECT_LT(grid.dp_tiles, n / 128 * ((m + tokens - 1) / tokens));  // some tiles split: counters
    expect_chained_calls_match_synchronized_ones(p, stream, [&](const DeviceBuffer& a, DeviceBuffer& c) {
      detail::cuda::gemm_wgmma_with(args(a, c), tokens, WgmmaSplit::kStreamK);
    });
  }
  check(cudaStreamDestroy(stream), "cudaStreamDestroy");
}

// The same for gemv_mma. N = K = 4096: 16-warp blocks fill an SM and launch
// with PDL (v9), as do 256 blocks of 12 warps (1 tile, M <= 4), 2 per SM, on
// a GPU of 129..255 SMs (v21); 128 blocks of 12 warps (2 tiles) and 256 of 8
// warps (3 or more per SM) launch without.
TEST(CudaKernels, GemvChainedCallsMatchSynchronizedOnes) {
  SKIP_WITHOUT_GPU();
  const int64_t n = 4096;
  cudaStream_t stream;
  check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  const Options options{Backend::kCuda, stream};
  for (const auto& [m, gemv] : {std::pair{int64_t(1), GemvShape{1, 2, 12}}, std::pair{int64_t(4), GemvShape{2, 2, 12}},
                                std::pair{int64_t(4), GemvShape{1, 2, 8}},
                                std::pair{int64_t(16), GemvShape{2, 2, 16, true, true}}}) {
    SCOPED_TRACE(detail::concat("M ", m, ", tiles ", gemv.tiles, ", steps ", gemv.steps, ", warps ", gemv.warps));
    Problem p = make_problem(m, n, n, 128, DType::kBFloat16, uint32_t(13 + m));
    GpuProblem gpu(p, n);
    expect_chained_calls_match_synchronized_ones(p, stream, [&](const DeviceBuffer& a, DeviceBuffer& c) {
      detail::MmArgs args = gpu.args(n, options);
      args.a = a.ptr;
      args.c = c.ptr;
      detail::cuda::gemv_mma_with(args, gemv);
    });
  }
  check(cudaStreamDestroy(stream), "cudaStreamDestroy");
}

TEST(CudaKernels, PublicApiDispatchesEveryM) {
  SKIP_WITHOUT_GPU();
  for (int64_t m : {0, 1, 2, 5, 16, 33, 100}) {
    for (DType dtype : float_dtypes()) {
      Problem p = make_problem(m, 40, 384, 128, dtype, uint32_t(m + 1));
      GpuProblem gpu(p, 40);
      weight_int4pack_mm(on_gpu(p.a_view(), gpu.a), gpu.packed_view(), 128,
                         on_gpu(p.sz_view(), gpu.sz),
                         on_gpu(TensorView::contiguous(nullptr, dtype, {m, 40}), gpu.c));
      check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
      expect_matches_oracle(p, oracle(p), gpu.result(40), 40, "weight_int4pack_mm");
    }
  }
}

TEST(CudaKernels, MisalignedActivationsFallBackCorrectly) {
  SKIP_WITHOUT_GPU();
  // A with an odd row stride (M = 3: the GEMV's 32-bit loads cannot be
  // used), and with rows 4- but not 16-byte aligned (M = 12: the GEMV's
  // staged A cannot be used, its direct loads can).
  for (const auto& [m, pad, group_size] : {std::tuple{3, 1, 64}, std::tuple{12, 2, 128}}) {
    Problem p = make_problem(m, 24, 256, group_size, DType::kBFloat16);
    const int64_t lda = p.k + pad;
    HostArray a_strided(p.dtype, p.m * lda);
    for (int64_t i = 0; i < p.m; ++i) {
      for (int64_t l = 0; l < p.k; ++l) a_strided.set(i * lda + l, p.a.get(i * p.k + l));
    }
    GpuProblem gpu(p, p.n);
    DeviceBuffer a(a_strided.data(), a_strided.bytes.size());
    TensorView a_view = on_gpu(TensorView::contiguous(nullptr, p.dtype, {p.m, p.k}), a);
    a_view.strides[0] = lda;
    weight_int4pack_mm(a_view, gpu.packed_view(), group_size, on_gpu(p.sz_view(), gpu.sz),
                       on_gpu(TensorView::contiguous(nullptr, p.dtype, {p.m, p.n}), gpu.c));
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    expect_matches_oracle(p, oracle(p), gpu.result(p.n), p.n, detail::concat("misaligned A, M=", m));
  }
}

class MetalPort : public ::testing::TestWithParam<std::tuple<DType, int64_t>> {};

TEST_P(MetalPort, BaselineMatchesOracle) {
  SKIP_WITHOUT_GPU();
  const auto [dtype, group_size] = GetParam();
  Problem p = make_problem(2, 48, 512, group_size, dtype);
  std::vector<uint8_t> metal(p.q.size());
  detail::cuda::metal_layout_from_wire(p.q.data(), p.n, p.k, metal.data());
  GpuProblem gpu(p, p.n);
  DeviceBuffer metal_dev(metal.data(), metal.size());
  const Options options{Backend::kCuda};
  detail::MmArgs args = gpu.args(p.n, options);
  args.packed = static_cast<const uint8_t*>(metal_dev.ptr);
  detail::cuda::metal_port_mm(args);
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  expect_matches_oracle(p, oracle(p), gpu.result(p.n), p.n, "metal_port");
}

INSTANTIATE_TEST_SUITE_P(SupportedGroups, MetalPort,
                         ::testing::Combine(::testing::ValuesIn(float_dtypes()),
                                            ::testing::Values(32, 64, 128)));

TEST(CudaDequantize, MatchesReference) {
  SKIP_WITHOUT_GPU();
  for (DType dtype : float_dtypes()) {
    Problem p = make_problem(1, 37, 320, 32, dtype);
    GpuProblem gpu(p, 1);
    const int64_t ldw = p.k + 8;
    DeviceBuffer w(size_t(p.n * ldw * 4));
    TensorView w_view = on_gpu(TensorView::contiguous(nullptr, DType::kFloat32, {p.n, p.k}), w);
    w_view.strides[0] = ldw;
    dequantize(gpu.packed_view(), 32, on_gpu(p.sz_view(), gpu.sz), w_view);
    const std::vector<float> host = w.to_host<float>(size_t(p.n * ldw));
    for (int64_t r = 0; r < p.n; ++r) {
      for (int64_t c = 0; c < p.k; ++c) {
        const double want = p.dequantized(r, c);
        ASSERT_NEAR(host[r * ldw + c], want, 1e-6 * (1 + std::fabs(want))) << r << "," << c;
      }
    }
  }
}

// A failed CUDA call is reported once, by its own check: the runtime's last
// error is cleared, so the next launch's check does not report it as its
// own (v17: a kernel's refused shared-memory attribute failed the next test's
// pack launch). Then a call works.
TEST(CudaErrors, FailedCallIsReportedOnce) {
  SKIP_WITHOUT_GPU();
  int count = 0;
  check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  expect_error([&] { INT4MM_CUDA_CHECK(cudaSetDevice(count)); }, "cuda: cudaSetDevice(count) failed at ");
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  Problem p = make_problem(1, 16, 64, 32, DType::kBFloat16);
  GpuProblem gpu(p, 16);  // packs on the GPU: a launch and its check
  weight_int4pack_mm(on_gpu(p.a_view(), gpu.a), gpu.packed_view(), 32, on_gpu(p.sz_view(), gpu.sz),
                     on_gpu(TensorView::contiguous(nullptr, p.dtype, {p.m, p.n}), gpu.c));
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  expect_matches_oracle(p, oracle(p), gpu.result(16), 16, "after a failed call");
}

TEST(CudaErrors, HostMemoryLabelledCudaIsAnErrorNotAFault) {
  SKIP_WITHOUT_GPU();
  Problem p = make_problem(2, 16, 64, 32, DType::kFloat16);
  GpuProblem gpu(p, 16);
  // A is ordinary host memory, but its view says cuda:0.
  TensorView a = p.a_view();
  a.device = Device::cuda(0);
  expect_error(
      [&] {
        weight_int4pack_mm(a, gpu.packed_view(), 32, on_gpu(p.sz_view(), gpu.sz),
                           on_gpu(TensorView::contiguous(nullptr, p.dtype, {2, 16}), gpu.c));
      },
      "weight_int4pack_mm: A must be memory of cuda:0, got ordinary host memory");
  std::vector<uint8_t> host_packed(size_t(gpu.shape.rows * gpu.shape.cols));
  TensorView packed = gpu.packed_view();
  packed.data = host_packed.data();
  expect_error([&] { convert_weight_to_int4pack(on_gpu(p.q_view(), gpu.q), packed); },
               "convert_weight_to_int4pack: packed must be memory of cuda:0, got ordinary host memory");
  // The device is healthy afterwards: a valid call still works.
  weight_int4pack_mm(on_gpu(p.a_view(), gpu.a), gpu.packed_view(), 32, on_gpu(p.sz_view(), gpu.sz),
                     on_gpu(TensorView::contiguous(nullptr, p.dtype, {2, 16}), gpu.c));
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  expect_matches_oracle(p, oracle(p), gpu.result(16), 16, "after rejected calls");
}

TEST(CudaErrors, HostPointersAreRejectedByDevice) {
  SKIP_WITHOUT_GPU();
  Problem p = make_problem(1, 16, 64, 32, DType::kFloat16);
  GpuProblem gpu(p, 16);
  expect_error(
      [&] {
        weight_int4pack_mm(p.a_view(), gpu.packed_view(), 32, on_gpu(p.sz_view(), gpu.sz),
                           on_gpu(TensorView::contiguous(nullptr, p.dtype, {1, 16}), gpu.c));
      },
      "weight_int4pack_mm: C must be on cpu, got cuda:0");
}

}  // namespace
}  // namespace int4mm::testing
