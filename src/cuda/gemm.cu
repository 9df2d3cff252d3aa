// Host side of gemm_mma (gemm_mma.cuh) and gemm_wgmma (gemm_wgmma.cuh): the
// launch configuration per M and the float32 workspace that the stream-K
// segments add into.
#include "cuda/common.cuh"
#include "cuda/cuda_internal.h"
#include "cuda/gemm_mma.cuh"
#include "cuda/gemm_wgmma.cuh"

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

// gemm_wgmma's configurations, chosen with bench/tune_mma.cu on an H100
// (docs/cuda.md, v5): activation rows per block (the smallest of 16 .. 256
// that holds `tokens`) and pipeline stages.
template <typename T, int kGroup>
void run_wgmma(const MmArgs& args, int tokens, bool one_block_per_tile, cudaStream_t stream) {
  const auto a = static_cast<const T*>(args.a);
  const auto sz = static_cast<const T*>(args.sz);
  const auto c = static_cast<T*>(args.c);
  const int m = int(args.m), n = int(args.n), k = int(args.k);
  auto launch = [&](auto tokens_tag, auto stages_tag) {
    launch_gemm_wgmma<T, kGroup, decltype(tokens_tag)::value, decltype(stages_tag)::value>(
        a, args.lda, args.packed, sz, c, args.ldc, m, n, k, one_block_per_tile, nullptr, 0, stream);
  };
  using std::integral_constant;
  if (tokens <= 16) {
    launch(integral_constant<int, 16>{}, integral_constant<int, 8>{});
  } else if (tokens <= 32) {
    launch(integral_constant<int, 32>{}, integral_constant<int, 8>{});
  } else if (tokens <= 64) {
    launch(integral_constant<int, 64>{}, integral_constant<int, 8>{});
  } else if (tokens <= 128) {
    launch(integral_constant<int, 128>{}, integral_constant<int, 6>{});
  } else {
    launch(integral_constant<int, 256>{}, integral_constant<int, 6>{});
  }
}

// A float32 [m, n] workspace on the call's stream, freed after `body` has
// queued its kernels (stream-ordered), also when it throws.
template <typename F>
void with_workspace(const MmArgs& args, cudaStream_t stream, F&& body) {
  float* workspace = nullptr;
  INT4MM_CUDA_CHECK(
      cudaMallocAsync(reinterpret_cast<void**>(&workspace), size_t(args.m * args.n) * sizeof(float), stream));
  try {
    body(workspace);
  } catch (...) {
    cudaFreeAsync(workspace, stream);
    throw;
  }
  INT4MM_CUDA_CHECK(cudaFreeAsync(workspace, stream));
}

// Calls f.template operator()<T, kGroup>() for a 16-bit dtype and the group size.
template <typename F>
void dispatch_half_types(const MmArgs& args, F&& f) {
  dispatch_float(args.dtype, [&](auto tag) {
    using T = decltype(tag);
    if constexpr (!std::is_same_v<T, float>) {
      dispatch_group_size(args.group_size, [&](auto group) { f(tag, group); });
    }
  });
}

}  // namespace

void gemm_mma_mm(const MmArgs& args) {
  const cudaStream_t stream = stream_of(*args.options);
  with_workspace(args, stream, [&](float* workspace) {
    dispatch_half_types(args, [&](auto tag, auto group) {
      constexpr int kGroup = decltype(group)::value;
      if constexpr (kGroup >= 64) run<decltype(tag), kGroup>(args, workspace, stream);
    });
  });
}

bool wgmma_available() {
  static std::atomic<int> cache[kMaxCachedDevices] = {};
  return cached_per_device(cache, [](int device) {
           int major = 0, minor = 0;
           INT4MM_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
           INT4MM_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
           return major == 9 && minor == 0 ? 1 : 2;  // 0 means "not asked yet"
         }) == 1;
}

void gemm_wgmma_with(const MmArgs& args, int tokens, bool direct) {
  dispatch_half_types(args, [&](auto tag, auto group) {
    run_wgmma<decltype(tag), decltype(group)::value>(args, tokens, direct, stream_of(*args.options));
  });
}

void gemm_wgmma_mm(const MmArgs& args) {
  // Rows per block: the smallest that holds M, 256 beyond. One block per
  // tile where the tiles make about 2 waves or more (stream-K's blocks,
  // spread over all tiles at once, would share little in L2 and pay for
  // their split tiles), and on short K where one wave holds every tile;
  // stream-K elsewhere (docs/cuda.md, v5).
  const int tokens = args.m <= 16 ? 16 : args.m <= 32 ? 32 : args.m <= 64 ? 64 : args.m <= 128 ? 128 : 256;
  const int64_t tiles = (args.n + 127) / 128 * ((args.m + tokens - 1) / tokens);
  const int64_t sms = sm_count();
  const int64_t slots = sms * (tokens <= 64 ? 2 : 1);  // blocks per SM: launch bounds and registers
  const bool short_k = args.k <= 4096 && tiles <= slots;
  gemm_wgmma_with(args, tokens, 10 * tiles >= 19 * sms || short_k);
}

}  // namespace int4mm::detail::cuda
