// Host side of gemm_mma (gemm_mma.cuh): grid, split-K and the float32
// workspace that the splits add into.
#include "cuda/common.cuh"
#include "cuda/cuda_internal.h"
#include "cuda/gemm_mma.cuh"

namespace int4mm::detail::cuda {
namespace {

// out[m][n] (float32, row stride n) -> c (row stride ldc), rounded once.
template <typename T>
__global__ void store_output_kernel(const float* __restrict__ out, T* __restrict__ c, int64_t ldc,
                                    int m, int n) {
  const int64_t total = int64_t(m) * n;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    c[(i / n) * ldc + i % n] = from_float<T>(out[i]);
  }
}

}  // namespace

void gemm_mma_mm(const MmArgs& args) {
  const cudaStream_t stream = stream_of(*args.options);
  const int sms = sm_count();

  const int64_t tiles = (args.n + 15) / 16;
  const int64_t blocks_n = (tiles + kGemmWarps - 1) / kGemmWarps;
  // 16 m-tiles would exceed one A copy per thread: M > 64 takes several row blocks.
  const int m_tiles = args.m <= 16 ? 2 : args.m <= 32 ? 4 : 8;
  const int64_t blocks_m = (args.m + m_tiles * 8 - 1) / (m_tiles * 8);
  const int64_t groups = args.k / args.group_size;
  const int64_t steps_per_group = args.group_size / 64;
  // Split K (at group boundaries) until there are about two blocks per SM.
  const int64_t want_splits = (2 * sms + blocks_n * blocks_m - 1) / (blocks_n * blocks_m);
  const int64_t groups_per_split = (groups + std::min(want_splits, groups) - 1) / std::min(want_splits, groups);
  const int64_t splits = (groups + groups_per_split - 1) / groups_per_split;

  float* out = nullptr;
  const size_t out_bytes = size_t(args.m * args.n) * sizeof(float);
  INT4MM_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&out), out_bytes, stream));
  const cudaError_t zero = cudaMemsetAsync(out, 0, out_bytes, stream);
  if (zero != cudaSuccess) cudaFreeAsync(out, stream);
  INT4MM_CUDA_CHECK(zero);
  const dim3 grid{unsigned(blocks_n), unsigned(splits), unsigned(blocks_m)};
  dispatch_float(args.dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_same_v<T, float>) {
      dispatch_group_size(args.group_size, [&](auto group) {
        constexpr int kGroup = decltype(group)::value;
        if constexpr (kGroup >= 64) {
          auto launch = [&](auto m_tiles_tag) {
            constexpr int kMTiles = decltype(m_tiles_tag)::value;
            constexpr int kSmem = kGemmStages * gemm_stage_bytes<T, kMTiles>();
            // Above 48 KB a block's dynamic shared memory must be asked for.
            INT4MM_CUDA_CHECK(cudaFuncSetAttribute(gemm_mma_kernel<T, kGroup, kMTiles>,
                                                   cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
            gemm_mma_kernel<T, kGroup, kMTiles><<<grid, kGemmWarps * 32, kSmem, stream>>>(
                static_cast<const T*>(args.a), args.lda, reinterpret_cast<const uint4*>(args.packed),
                static_cast<const T*>(args.sz), out, int(args.m), int(args.n), int(args.k),
                int(groups_per_split * steps_per_group));
          };
          if (m_tiles == 2) {
            launch(std::integral_constant<int, 2>{});
          } else if (m_tiles == 4) {
            launch(std::integral_constant<int, 4>{});
          } else {
            launch(std::integral_constant<int, 8>{});
          }
        }
      });
      store_output_kernel<T><<<sms * 4, 256, 0, stream>>>(out, static_cast<T*>(args.c), args.ldc,
                                                          int(args.m), int(args.n));
    }
  });
  const cudaError_t launch = cudaGetLastError();
  const cudaError_t release = cudaFreeAsync(out, stream);
  check_cuda(launch, "gemm_mma_kernel", __FILE__, __LINE__);
  INT4MM_CUDA_CHECK(release);
}

}  // namespace int4mm::detail::cuda
