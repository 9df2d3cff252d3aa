// The CUDA backend's entry points and its dispatch: which kernel runs for
// which (dtype, M, alignment, GPU). The one table:
//
//   dtype        M         kernel                               why
//   fp16/bf16    1..8      gemv_mma<kMTiles = 1>, tiles per     memory-bound; tensor cores do
//                          block, steps per chunk, warps and    the math, weights read once;
//                          staged A by M, N, group and          each activation fragment feeds
//                          alignment (gemv_shape)               kTiles tiles
//                9..16     gemv_mma<2, kTiles = 4 | 2>, A       gemv_mma re-reads A per block:
//                          staged where it can be, but where    at 16 rows that traffic shows
//                          N K >= 2^27, or >= 2^25 and N >= 3 K
//                          (gemm_wgmma) or K >= 1.5 N (but not
//                          with gemm_wgmma where A is staged),
//                          as 17.. below
//                17..      compute capability 9.0:              wgmma (sm_90a): the weights
//                          gemm_wgmma, 16..256 rows per         dequantized in registers as A,
//                          block; whole waves of tiles, last    the activations read by the
//                          wave stream-K (or one block per      tensor cores from shared memory
//                          tile: rule in gemm.cu)
//                17..128   other GPUs: gemm_mma (group >= 64;   one shared activation tile feeds
//                          group 32: gemv_mma up to M = 32)     8 warps; stream-K over the SMs
//                129..     other GPUs: dequantize + cuBLAS
//   float32      1..4      gemv_simt<kM = 1, 2, 4>              full fp32 FMAs on CUDA cores
//   float32      5..       dequantize + cuBLAS SGEMM (no TF32)
//
// The thresholds are the H100 measurements of docs/cuda.md (v4-v8; bench/tune_mma.cu).
// Any kernel whose alignment needs (see supports()) are not met falls back to
// dequantize + cuBLAS, which accepts every valid input.
#include <atomic>

#include "cuda/common.cuh"
#include "cuda/cuda_internal.h"
#include "cuda/gemv_mma.cuh"
#include "cuda/gemv_simt.cuh"
#include "cuda/layout.h"

namespace int4mm::detail::cuda {

void dequant_gemm_mm(const MmArgs& args);  // dequant_gemm.cu
void gemm_mma_mm(const MmArgs& args);      // gemm.cu
void gemm_wgmma_mm(const MmArgs& args);    // gemm.cu

namespace {

// gemv_mma's launch configuration, chosen with bench/tune_mma.cu on an H100
// (docs/cuda.md, "v2"): 8 warps split K, 4 x 16-byte loads per lane per tile,
// no register double buffer (it cost more occupancy than it hid latency), and
// register caps that keep 3 blocks (1 tile) or 2 blocks (2 tiles) per SM.
constexpr int kGemvWarps = 8;
constexpr int kGemvSteps = 4;  // gemv_simt's; gemv_mma's per call (gemv_shape)
constexpr int64_t kMmaMaxM = 32;
constexpr int64_t kSimtMaxM = 4;
constexpr int64_t kGemvLastM = 8;    // gemv_mma up to this M everywhere ...
constexpr int64_t kGemmLastM = 128;  // ... gemm_mma from M = 17 (9 on large weights) to this one

bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

int tiles(const MmArgs& args) { return int(cuda_layout::padded_n(args.n) / 16); }

}  // namespace

// Multiprocessor count of the current device, asked of the driver once per
// device: dispatch runs on every call, and the attribute query is not free.
int sm_count() {
  static std::atomic<int> cache[kMaxCachedDevices] = {};
  return cached_per_device(cache, [](int device) {
    int sms = 0;
    INT4MM_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    return sms;
  });
}

namespace {

// gemv_mma's shape per call: 16-row tiles per block (each activation
// fragment feeds that many mmas, and each block reads A once), 64-k steps
// per chunk (each warp's loads in flight; smaller chunks leave registers for
// more blocks per SM), warps, and A direct or staged through shared memory.
// Chosen with bench/tune_mma.cu on an H100 (docs/cuda.md, v2, v4, v6, v7,
// v8): "wide" is N/16 >= 3 x SMs; "staged" needs group 128 and rows of A
// 16-byte aligned.
//   M 1..4    2 tiles where wide, else 1; 2 steps for group <= 64, and for
//             group 128 where K <= N; else 4 (group 256: a chunk holds whole
//             groups)
//   M 5..8    group 128: 4 tiles where N/16 >= 4 x SMs; else staged, 2 tiles
//             and 4 steps (8192 x 8192 at M = 8 16.1 us against 16.9 with
//             v7.3's 4 tiles of 16 warps, 14336 x 4096 17.4 against 20.7,
//             v8); without staged A, 4 tiles of 16 warps where wide (v7.3).
//             Other groups: 2 tiles where wide, else 1; 2 steps for group
//             <= 64, else 4
//   M 9..16   group 128 staged: 2 tiles, 2 steps, 16 warps where the blocks
//             fit one per SM, else 8 (8192 x 8192 at M = 16 20.5 us against
//             22.5, 4096 x 4096 7.9 against 10.0, v8). Otherwise 2 tiles
//             for group 32, else 4 where wide and 2 elsewhere; 2 steps for
//             group <= 64, else 4
//   M 17..32  (group 32 on GPUs without gemm_wgmma) 1 tile, 4 steps
struct GemvShape {
  int tiles, steps, warps = kGemvWarps;
  bool staged_a = false;
};

bool a_rows_16_byte_aligned(const MmArgs& args) { return args.lda % 8 == 0 && aligned(args.a, 16); }

// The staged-A shapes that are built (gemv_mma): group 128; 2 tiles of
// 8 warps and 4 steps at M = 5..8; 2 tiles of 8 or 16 warps and 2 steps at
// M = 9..16.
bool staged_a_built(const MmArgs& args, const GemvShape& shape) {
  if (args.group_size != 128 || args.m <= 4 || args.m > 16 || shape.tiles != 2) return false;
  return args.m <= 8 ? shape.steps == 4 && shape.warps == kGemvWarps
                     : shape.steps == 2 && (shape.warps == kGemvWarps || shape.warps == 2 * kGemvWarps);
}

GemvShape gemv_shape(const MmArgs& args) {
  const int64_t sms = sm_count();
  const bool wide = tiles(args) >= 3 * sms;
  const int steps = args.group_size <= 64 ? 2 : 4;
  const bool staged = args.group_size == 128 && a_rows_16_byte_aligned(args);
  if (args.m <= 4) return {wide ? 2 : 1, args.group_size == 128 && args.k <= args.n ? 2 : steps};
  if (args.m <= 8) {
    if (tiles(args) >= 4 * sms && args.group_size == 128) return {4, 2};
    if (staged) return {2, 4, kGemvWarps, true};
    if (wide && args.group_size == 128) return {4, 2, 2 * kGemvWarps};
    return {wide ? 2 : 1, steps};
  }
  if (args.m <= 16) {
    if (staged) return {2, 2, (tiles(args) + 1) / 2 <= sms ? 2 * kGemvWarps : kGemvWarps, true};
    return {wide && args.group_size >= 64 ? 4 : 2, steps};
  }
  return {1, 4};
}

// M = 9..16: a GEMM (gemm_wgmma, else gemm_mma) on the largest weights and
// on deep ones (K >= 1.5 N): 8192 x 28672, 28672 x 8192 and 14336 x 4096 ran
// 1.0-1.25x faster in gemm_mma, 8192 x 8192, 4096 x 14336 and 4096 x 4096
// 1.1-1.2x slower (v4); gemm_wgmma and gemv_mma tie on 8192 x 8192 (v5).
// With gemm_wgmma, wide ones too (N >= 3 K): 4096 x 14336 at M = 16 ran in
// 17.7 us against gemv_mma's 22.9 (v7.2); but deep ones below 2^27 weights
// stay with gemv_mma where it stages A (14336 x 4096: 19.0 us against
// gemm_wgmma's 23.3, v8). Without gemm_wgmma, staged A is unmeasured
// against gemm_mma: v4's rule.
bool gemm_for_m16(const MmArgs& args, bool wgmma) {
  const int64_t weights = args.n * args.k;
  if (weights >= (int64_t(1) << 27)) return true;
  if (weights < (int64_t(1) << 25)) return false;
  const bool deep = 2 * args.k >= 3 * args.n;
  if (wgmma) return args.n >= 3 * args.k || (deep && !gemv_shape(args).staged_a);
  return deep;
}

template <typename T, int kGroup, int kMTiles, int kTiles, int kSteps, int kWarps = kGemvWarps, bool kStagedA = false>
void launch_mma(const MmArgs& args, cudaStream_t stream) {
  // Blocks per SM the registers must allow: the most each shape fits
  // without spills on sm_90a, or the faster of two that do (v6); 16 warps:
  // one block.
  constexpr int kFragments = kTiles * kMTiles;
  constexpr int kMinBlocks = kWarps > kGemvWarps                                   ? 1
                             : kFragments == 1                                     ? 3
                             : kMTiles == 1 && kTiles == 2 && kSteps == 2 && kGroup == 128 ? 3
                             : kMTiles == 1 || (kFragments == 4 && kSteps == 2)    ? 2
                                                                                   : 1;
  launch_gemv_mma<T, kGroup, kMTiles, kTiles, kWarps, kSteps, kStagedA, kMinBlocks>(
      static_cast<const T*>(args.a), args.lda, reinterpret_cast<const uint4*>(args.packed),
      static_cast<const T*>(args.sz), static_cast<T*>(args.c), args.ldc, int(args.m), int(args.n), int(args.k),
      stream);
}

template <int kGroup, int kM>
void launch_simt(const MmArgs& args, cudaStream_t stream) {
  gemv_simt_kernel<kGroup, kM, kGemvWarps, kGemvSteps><<<tiles(args), kGemvWarps * 32, 0, stream>>>(
      static_cast<const float*>(args.a), args.lda, reinterpret_cast<const uint4*>(args.packed),
      static_cast<const float*>(args.sz), static_cast<float*>(args.c), args.ldc, int(args.m),
      int(args.n), int(args.k));
  INT4MM_CUDA_CHECK_LAUNCH("gemv_simt_kernel");
}

void gemv_mma(const MmArgs& args, const GemvShape& shape) {
  const cudaStream_t stream = stream_of(*args.options);
  dispatch_group_size(args.group_size, [&](auto group) {
    constexpr int kGroup = decltype(group)::value;
    auto run = [&](auto tag) {
      using T = decltype(tag);
      if constexpr (!std::is_same_v<T, float>) {
        auto launch = [&](auto m_tiles, auto tiles) {
          constexpr int kMTiles = decltype(m_tiles)::value, kTiles = decltype(tiles)::value;
          if constexpr (kGroup == 128 && kTiles == 2) {  // staged A: the shapes of staged_a_built
            if (shape.staged_a) {
              if constexpr (kMTiles == 1) {
                return launch_mma<T, kGroup, 1, 2, 4, kGemvWarps, true>(args, stream);
              } else if (shape.warps == 2 * kGemvWarps) {
                return launch_mma<T, kGroup, kMTiles, 2, 2, 2 * kGemvWarps, true>(args, stream);
              } else {
                return launch_mma<T, kGroup, kMTiles, 2, 2, kGemvWarps, true>(args, stream);
              }
            }
          }
          if constexpr (kGroup <= 128) {
            if constexpr (kGroup == 128 && kMTiles == 1 && kTiles == 4) {
              if (shape.warps == 2 * kGemvWarps) {
                return launch_mma<T, kGroup, kMTiles, kTiles, 2, 2 * kGemvWarps>(args, stream);
              }
            }
            if (shape.steps == 2) return launch_mma<T, kGroup, kMTiles, kTiles, 2>(args, stream);
          }
          launch_mma<T, kGroup, kMTiles, kTiles, 4>(args, stream);
        };
        using std::integral_constant;
        using One = integral_constant<int, 1>;
        using Two = integral_constant<int, 2>;
        using Four = integral_constant<int, 4>;
        if (args.m <= 8) {
          shape.tiles == 4   ? launch(One{}, Four{})
          : shape.tiles == 2 ? launch(One{}, Two{})
                             : launch(One{}, One{});
        } else if (args.m <= 16) {
          shape.tiles == 4 ? launch(Two{}, Four{}) : launch(Two{}, Two{});
        } else {
          launch(Four{}, One{});
        }
      }
    };
    dispatch_float(args.dtype, run);
  });
}

void gemv_simt(const MmArgs& args) {
  const cudaStream_t stream = stream_of(*args.options);
  dispatch_group_size(args.group_size, [&](auto group) {
    constexpr int kGroup = decltype(group)::value;
    if (args.m == 1) {
      launch_simt<kGroup, 1>(args, stream);
    } else if (args.m == 2) {
      launch_simt<kGroup, 2>(args, stream);
    } else {
      launch_simt<kGroup, 4>(args, stream);
    }
  });
}

}  // namespace

const char* kernel_name(MmKernel kernel) {
  switch (kernel) {
    case MmKernel::kAuto: return "auto";
    case MmKernel::kGemvMma: return "gemv_mma";
    case MmKernel::kGemmMma: return "gemm_mma";
    case MmKernel::kGemvSimt: return "gemv_simt";
    case MmKernel::kGemmWgmma: return "gemm_wgmma";
    case MmKernel::kDequantGemm: return "dequant_cublas";
  }
  return "unknown";
}

bool supports(MmKernel kernel, const MmArgs& args) {
  const bool int32_sizes = args.n < (int64_t(1) << 31) && args.k < (int64_t(1) << 31) &&
                           args.m < (int64_t(1) << 31);
  switch (kernel) {
    case MmKernel::kAuto:
    case MmKernel::kDequantGemm: return int32_sizes;
    case MmKernel::kGemvMma:
      // 32-bit loads of activation pairs and scale/zero pairs.
      return int32_sizes && args.dtype != DType::kFloat32 && args.m <= kMmaMaxM &&
             args.lda % 2 == 0 && aligned(args.a, 4) && aligned(args.sz, 4);
    case MmKernel::kGemmMma:
      // 16-byte loads of activation rows; groups end on 64-k steps.
      return int32_sizes && args.dtype != DType::kFloat32 && args.group_size >= 64 &&
             args.lda % 8 == 0 && aligned(args.a, 16) && aligned(args.sz, 4);
    case MmKernel::kGemmWgmma:
      // As gemm_mma, any group size; sm_90a code runs on compute capability 9.0 only.
      return int32_sizes && args.dtype != DType::kFloat32 && args.lda % 8 == 0 &&
             aligned(args.a, 16) && aligned(args.sz, 4) && wgmma_available();
    case MmKernel::kGemvSimt:
      // float2 loads of activation pairs and scale/zero pairs.
      return int32_sizes && args.dtype == DType::kFloat32 && args.m <= kSimtMaxM &&
             args.lda % 2 == 0 && aligned(args.a, 8) && aligned(args.sz, 8);
  }
  return false;
}

MmKernel choose_kernel(const MmArgs& args) {
  const bool wgmma = supports(MmKernel::kGemmWgmma, args);
  const bool gemv = args.m <= kGemvLastM || (args.m <= 16 && !gemm_for_m16(args, wgmma));
  const MmKernel first = gemv    ? MmKernel::kGemvMma
                         : wgmma ? MmKernel::kGemmWgmma
                         : args.m <= kGemmLastM ? MmKernel::kGemmMma
                                                : MmKernel::kDequantGemm;
  const MmKernel order[] = {first, MmKernel::kGemvMma, MmKernel::kGemvSimt};
  for (MmKernel kernel : order) {
    if (supports(kernel, args)) return kernel;
  }
  return MmKernel::kDequantGemm;
}

void mm_with(MmKernel kernel, const MmArgs& args) {
  if (kernel == MmKernel::kAuto) kernel = choose_kernel(args);
  if (!supports(kernel, args)) {
    fail("weight_int4pack_mm", "kernel ", kernel_name(kernel), " does not support M=", args.m,
         " dtype=", dtype_name(args.dtype), " lda=", args.lda);
  }
  switch (kernel) {
    case MmKernel::kGemvMma: gemv_mma(args, gemv_shape(args)); break;
    case MmKernel::kGemvSimt: gemv_simt(args); break;
    case MmKernel::kGemmMma: gemm_mma_mm(args); break;
    case MmKernel::kGemmWgmma: gemm_wgmma_mm(args); break;
    default: dequant_gemm_mm(args); break;
  }
}

void mm(const MmArgs& args) {
  const DeviceGuard guard(args.device);
  const char* op = "weight_int4pack_mm";
  check_device_pointer(op, "A", args.a, args.device);
  check_device_pointer(op, "packed", args.packed, args.device);
  check_device_pointer(op, "scales_and_zeros", args.sz, args.device);
  check_device_pointer(op, "C", args.c, args.device);
  if (args.n >= (int64_t(1) << 31) || args.k >= (int64_t(1) << 31) || args.m >= (int64_t(1) << 31)) {
    fail("weight_int4pack_mm", "M, N and K must each be below 2^31 on CUDA, got M=", args.m,
         " N=", args.n, " K=", args.k);
  }
  mm_with(MmKernel::kAuto, args);
}

bool available() {
  // Asked once per process: the validation layer calls this on every op.
  static const bool present = [] {
    int count = 0;
    return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  }();
  return present;
}

void gemv_mma_with(const MmArgs& args, int tiles_per_block, int steps, int warps, bool staged_a) {
  const int t = tiles_per_block;
  const bool tiles_ok = args.m <= 8 ? t == 1 || t == 2 || t == 4 : args.m <= 16 ? t == 2 || t == 4 : t == 1;
  const bool warps_ok = warps == kGemvWarps || staged_a ||
                        (warps == 2 * kGemvWarps && args.m <= 8 && t == 4 && steps == 2 && args.group_size == 128);
  const GemvShape shape{t, steps, warps, staged_a};
  const bool staged_ok = !staged_a || staged_a_built(args, shape);
  if (!tiles_ok || (steps != 2 && steps != 4) || steps * 64 % args.group_size != 0 || !warps_ok || !staged_ok) {
    fail("gemv_mma_with", "no kernel for tiles_per_block=", t, ", steps=", steps, ", warps=", warps,
         ", staged_a=", staged_a ? "true" : "false", " at M=", args.m, ", group_size=", args.group_size,
         " (tiles 1, 2 or 4 up to M = 8, 2 or 4 up to 16, 1 up to 32; steps 2 or 4, whole groups;"
         " 8 warps, or 16 with 4 tiles, 2 steps and group 128 up to M = 8;"
         " staged A: group 128, 2 tiles, 8 warps and 4 steps at M = 5..8, 8 or 16 warps and 2 steps at M = 9..16)");
  }
  if (!supports(MmKernel::kGemvMma, args)) {
    fail("gemv_mma_with", "gemv_mma does not support M=", args.m, " dtype=", dtype_name(args.dtype),
         " lda=", args.lda);
  }
  if (staged_a && !a_rows_16_byte_aligned(args)) {
    fail("gemv_mma_with", "staged A needs 16-byte aligned rows of A (lda % 8 == 0, A 16-byte aligned), got lda=",
         args.lda);
  }
  gemv_mma(args, shape);
}

}  // namespace int4mm::detail::cuda
