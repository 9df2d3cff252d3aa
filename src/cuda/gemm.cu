// Host side of gemm_mma (gemm_mma.cuh): the launch configuration per M and
// the float32 workspace that the stream-K segments add into.
#include "cuda/common.cuh"
#include "cuda/cuda_internal.h"
#include "cuda/gemm_mma.cuh"

namespace int4mm::detail::cuda {
namespace {

// Configurations by M, chosen with bench/tune_mma.cu on an H100 (docs/cuda.md, v4):
//   GemmShape<m-tiles per block, weight tiles per warp, warps, stages>
// Above 64 rows, m-blocks of 64 (16 m-tiles per block needs 222 registers
// and ran 1.3x slower).
using GemmM16 = GemmShape<2, 2, 8, 8>;
using GemmM32 = GemmShape<4, 4, 8, 6>;
using GemmM64 = GemmShape<8, 2, 8, 6>;

template <typename T, int kGroup>
void run(const MmArgs& args, float* workspace, cudaStream_t stream) {
  const auto a = static_cast<const T*>(args.a);
  const auto sz = static_cast<const T*>(args.sz);
  const auto c = static_cast<T*>(args.c);
  const int m = int(args.m), n = int(args.n), k = int(args.k);
  if (m <= 16) {
    launch_gemm_mma<T, kGroup, GemmM16>(a, args.lda, args.packed, sz, c, args.ldc, m, n, k, workspace, stream);
  } else if (m <= 32) {
    launch_gemm_mma<T, kGroup, GemmM32>(a, args.lda, args.packed, sz, c, args.ldc, m, n, k, workspace, stream);
  } else {
    launch_gemm_mma<T, kGroup, GemmM64>(a, args.lda, args.packed, sz, c, args.ldc, m, n, k, workspace, stream);
  }
}

}  // namespace

void gemm_mma_mm(const MmArgs& args) {
  const cudaStream_t stream = stream_of(*args.options);
  float* workspace = nullptr;
  INT4MM_CUDA_CHECK(
      cudaMallocAsync(reinterpret_cast<void**>(&workspace), size_t(args.m * args.n) * sizeof(float), stream));
  try {
    dispatch_float(args.dtype, [&](auto tag) {
      using T = decltype(tag);
      if constexpr (!std::is_same_v<T, float>) {
        dispatch_group_size(args.group_size, [&](auto group) {
          constexpr int kGroup = decltype(group)::value;
          if constexpr (kGroup >= 64) run<T, kGroup>(args, workspace, stream);
        });
      }
    });
  } catch (...) {
    cudaFreeAsync(workspace, stream);
    throw;
  }
  INT4MM_CUDA_CHECK(cudaFreeAsync(workspace, stream));
}

}  // namespace int4mm::detail::cuda
