// tune_mma: a workbench for the launch configurations of the tensor-core
// kernels (llm.c style): gemv_mma's (tiles per block, warps, steps per chunk,
// staged A, scaled weights, min blocks per SM), gemm_mma's GemmShape
// (m-tiles per block, weight tiles per warp, warps, pipeline stages) and
// gemm_wgmma's (rows per block, stages, steps per stage; one block per
// tile, stream-K, or tiles split over clusters of a given size; grids
// without a workspace with and without PDL), per M.
// Each variant is checked against dequantize + cuBLAS, then timed as PERF.md
// asks (CUDA graph of 20 calls, weights rotated past 3x L2, median of 20
// replays). The winners go into src/cuda/dispatch.cu and src/cuda/gemm.cu;
// docs/cuda.md keeps the table.
//
//   build-dev/bench/int4mm_tune_mma [KxN,...] [name part|part... | -part] [group size] [M,M,...]
// (bf16; group 128 and M = 8 .. 4096 by default; other group sizes time gemv_mma only)
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "bench.h"
#include "core/float16.h"
#include "cuda/cuda_internal.h"
#include "cuda/gemm_mma.cuh"
#include "cuda/gemm_wgmma.cuh"
#include "cuda/gemm_wgmma_ws.cuh"

using namespace int4mm;
using T = __nv_bfloat16;
constexpr int kGroup = 128;  // of the GEMM variants

#define CHECK(call)                                                          \
  do {                                                                       \
    cudaError_t e = (call);                                                  \
    if (e != cudaSuccess) {                                                  \
      std::fprintf(stderr, "%s failed: %s\n", #call, cudaGetErrorString(e)); \
      return 1;                                                              \
    }                                                                        \
  } while (0)

struct Operands {
  const T* a;
  const uint4* packed;
  const T* sz;
  T* c;
  float* workspace;  // float32 [m, n] for gemm_mma; gemm_wgmma's stream-K uses it too
  size_t workspace_bytes;
  int m, n, k, group;
  bool pdl;  // gemm_wgmma grids without a workspace: launched with PDL
};

struct Variant {
  std::string name;
  std::function<void(const Operands&, cudaStream_t)> launch;
  std::function<std::string(const Operands&)> describe = nullptr;  // the launch's grid, where it varies
  bool pdl = false;  // timed with and without PDL
};

template <int kMTiles, int kTiles, int kWarps, int kSteps, bool kStagedA, bool kScaledW, int kMinBlocks,
          int kGroupSize = 128, int kBuffers = 1>
Variant gemv() {
  char name[96];
  std::snprintf(name, sizeof name, "gemv M%d T%d W%d S%d %s %s B%d%s", kMTiles, kTiles, kWarps, kSteps,
                kStagedA ? "st" : "--", kScaledW ? "sc" : "--", kMinBlocks, kBuffers == 2 ? " x2" : "");
  return {name, [](const Operands& o, cudaStream_t s) {
            detail::cuda::launch_gemv_mma<T, kGroupSize, kMTiles, kTiles, kWarps, kSteps, kStagedA, kScaledW,
                                          kMinBlocks, kBuffers>(
                o.a, o.k, o.packed, o.sz, o.c, o.n, o.m, o.n, o.k, s);
          }};
}

template <int kMTiles, int kNTiles, int kWarps, int kStages>
Variant gemm() {
  char name[96];
  std::snprintf(name, sizeof name, "gemm M%d N%d W%d S%d", kMTiles, kNTiles, kWarps, kStages);
  return {name, [](const Operands& o, cudaStream_t s) {
            detail::cuda::launch_gemm_mma<T, kGroup, detail::cuda::GemmShape<kMTiles, kNTiles, kWarps, kStages>>(
                o.a, o.k, o.packed, o.sz, o.c, o.n, o.m, o.n, o.k, o.workspace, s);
          }};
}

// gemm_wgmma: one block per tile (direct), stream-K (split tiles meet in the
// workspace) or stream-K with clusters (even splits meet in shared memory);
// stages of kSub 64-k steps.
using detail::cuda::WgmmaSplit;
constexpr WgmmaSplit kDirect = WgmmaSplit::kNone, kStreamK = WgmmaSplit::kStreamK, kCluster = WgmmaSplit::kCluster;

std::string describe_grid(const detail::cuda::WgmmaGrid& grid) {
  char text[96];
  std::snprintf(text, sizeof text, "grid %lld dp %lld cluster %d%s", static_cast<long long>(grid.blocks),
                static_cast<long long>(grid.dp_tiles), grid.cluster, grid.pdl ? " pdl" : "");
  return text;
}

template <int kTokens, int kStages, WgmmaSplit kSplit, int kSub = 1>
Variant wgmma() {
  char name[96];
  std::snprintf(name, sizeof name, "wgmma T%d S%d U%d %s", kTokens, kStages, kSub,
                kSplit == kDirect ? "direct" : kSplit == kStreamK ? "streamk" : "cluster");
  auto plan = [](const Operands& o) {
    detail::cuda::WgmmaGrid grid =
        detail::cuda::plan_gemm_wgmma<T, kGroup, kTokens, kStages, kSub>(o.m, o.n, o.k, kSplit);
    grid.pdl = o.pdl;
    return grid;
  };
  return {name,
          [plan](const Operands& o, cudaStream_t s) {
            detail::cuda::launch_gemm_wgmma<T, kGroup, kTokens, kStages, kSub>(
                o.a, o.k, o.packed, o.sz, o.c, o.n, o.m, o.n, o.k, plan(o), o.workspace, o.workspace_bytes, s);
          },
          [plan](const Operands& o) { return describe_grid(plan(o)); }, kSplit != kStreamK};
}

// The tiles of kTokens activation rows (x 128 weight rows) of a problem.
template <int kTokens>
int64_t wgmma_tiles(const Operands& o) {
  return (int64_t(o.n) + detail::cuda::kWgmmaRowsN - 1) / detail::cuda::kWgmmaRowsN *
         ((int64_t(o.m) + kTokens - 1) / kTokens);
}

// The grid of every tile of kTokens rows split over a cluster of kCluster
// blocks (the workbench's forced cluster sizes).
template <int kTokens, int kCluster>
detail::cuda::WgmmaGrid forced_clusters(const Operands& o) {
  return detail::cuda::WgmmaGrid{kCluster * wgmma_tiles<kTokens>(o), 0, kCluster, o.pdl};
}

// gemm_wgmma_ws (the copy warpgroup's kernel) with kBlocks blocks per SM and
// kRowsN weight rows per block (named "R256" where 256): stream-K, whole
// tiles on a persistent grid (one block per slot), one block per tile, or
// tiles split over clusters (plan_gemm_wgmma_ws's size).
enum class WsGrid { kStreamK, kPersistent, kPerTile, kCluster };

template <int kTokens, int kStages, WsGrid kGrid, int kBlocks = 1, int kRowsN = 128>
Variant wgmma_ws() {
  char name[96];
  std::snprintf(name, sizeof name, "wgmma_ws T%d S%d B%d%s %s", kTokens, kStages, kBlocks,
                kRowsN == 128 ? "" : " R256",
                kGrid == WsGrid::kStreamK      ? "streamk"
                : kGrid == WsGrid::kPersistent ? "persistent"
                : kGrid == WsGrid::kPerTile    ? "pertile"
                                               : "cluster");
  auto plan = [](const Operands& o) {
    const WgmmaSplit split = kGrid == WsGrid::kStreamK ? kStreamK : kGrid == WsGrid::kCluster ? kCluster : kDirect;
    detail::cuda::WgmmaGrid grid = detail::cuda::plan_gemm_wgmma_ws<T, kGroup, kTokens, kStages, kBlocks, kRowsN>(
        o.m, o.n, o.k, split, kGrid == WsGrid::kPersistent);
    grid.pdl = o.pdl;
    return grid;
  };
  return {name,
          [plan](const Operands& o, cudaStream_t s) {
            detail::cuda::launch_gemm_wgmma_ws<T, kGroup, kTokens, kStages, kBlocks, kRowsN>(
                o.a, o.k, o.packed, o.sz, o.n, o.c, o.n, o.m, o.n, o.k, plan(o), o.workspace, o.workspace_bytes, s);
          },
          [plan](const Operands& o) { return describe_grid(plan(o)); }, kGrid != WsGrid::kStreamK};
}

// The gemm_wgmma_ws grids of one configuration.
template <int kTokens, int kStages, int kBlocks = 1, int kRowsN = 128>
std::vector<Variant> wgmma_ws_grids() {
  return {wgmma_ws<kTokens, kStages, WsGrid::kStreamK, kBlocks, kRowsN>(),
          wgmma_ws<kTokens, kStages, WsGrid::kPersistent, kBlocks, kRowsN>(),
          wgmma_ws<kTokens, kStages, WsGrid::kPerTile, kBlocks, kRowsN>(),
          wgmma_ws<kTokens, kStages, WsGrid::kCluster, kBlocks, kRowsN>()};
}

// gemm_wgmma_ws with every tile split over a cluster of kCluster blocks (any
// K: the planner's grid stops at K = 8192), whether or not those clusters
// fit the GPU at once.
template <int kTokens, int kStages, int kCluster, int kBlocks>
Variant wgmma_ws_cluster() {
  char name[96];
  std::snprintf(name, sizeof name, "wgmma_ws T%d S%d B%d cluster%d", kTokens, kStages, kBlocks, kCluster);
  auto plan = [](const Operands& o) { return forced_clusters<kTokens, kCluster>(o); };
  return {name,
          [plan](const Operands& o, cudaStream_t s) {
            detail::cuda::launch_gemm_wgmma_ws<T, kGroup, kTokens, kStages, kBlocks, 128>(
                o.a, o.k, o.packed, o.sz, o.n, o.c, o.n, o.m, o.n, o.k, plan(o), nullptr, 0, s);
          },
          [plan](const Operands& o) { return describe_grid(plan(o)); }, true};
}

// The library's dispatch (the public path: its grid, its workspace from the
// stream's memory pool), to compare with the variants it chooses from. It
// runs alone (filter "dispatch"): nvcc 13 gives each translation unit its
// own host stub for a kernel template (-static-global-template-stub), while
// the launchers' per-kernel caches (the shared-memory attribute set once) are
// inline statics that the linker merges, so the library and this file must
// not launch the same kernel in one process.
Variant dispatched() {
  return {"dispatch", [](const Operands& o, cudaStream_t s) {
            const Options options{Backend::kCuda, s};
            const detail::MmArgs args{DType::kBFloat16, o.a, o.k, reinterpret_cast<const uint8_t*>(o.packed),
                                      o.sz, o.c, o.n, o.m, o.n, o.k, o.group, &options};
            detail::cuda::mm_with(detail::cuda::MmKernel::kAuto, args);
          }};
}

// gemm_wgmma with every tile split over a cluster of kCluster blocks, whether
// or not those clusters fit the GPU at once (the description says how many do).
template <int kTokens, int kStages, int kCluster, int kSub = 1>
Variant wgmma_cluster() {
  char name[96];
  std::snprintf(name, sizeof name, "wgmma T%d S%d U%d cluster%d", kTokens, kStages, kSub, kCluster);
  auto plan = [](const Operands& o) { return forced_clusters<kTokens, kCluster>(o); };
  return {name,
          [plan](const Operands& o, cudaStream_t s) {
            detail::cuda::launch_gemm_wgmma<T, kGroup, kTokens, kStages, kSub>(
                o.a, o.k, o.packed, o.sz, o.c, o.n, o.m, o.n, o.k, plan(o), nullptr, 0, s);
          },
          [plan](const Operands& o) {
            using Plan = detail::cuda::WgmmaPlan<kTokens, kStages, kGroup, kSub>;
            auto kernel = detail::cuda::gemm_wgmma_kernel<T, kGroup, kTokens, kStages, kSub>;
            static std::atomic<int> occupancy[detail::cuda::kMaxCachedDevices] = {};
            static std::atomic<int> clusters[detail::cuda::kMaxCachedDevices] = {};
            detail::cuda::resident_blocks_per_sm(occupancy, kernel, Plan::kThreads, Plan::kSmemBytes);
            const int fit =
                detail::cuda::resident_clusters(clusters, kernel, Plan::kThreads, Plan::kSmemBytes, kCluster);
            return describe_grid(plan(o)) + " (" + std::to_string(fit) + " fit)";
          },
          true};
}

// gemm_wgmma with every tile split evenly over kSplits blocks that meet in
// the workspace (stream-K's fixup), whether or not they fit at once; where
// kAlone, one block per SM (shared memory padded).
template <int kTokens, int kStages, int kSplits, bool kAlone, int kSub = 1>
Variant wgmma_split() {
  char name[96];
  std::snprintf(name, sizeof name, "wgmma T%d S%d U%d split%d%s", kTokens, kStages, kSub, kSplits,
                kAlone ? " alone" : "");
  auto plan = [](const Operands& o) {
    detail::cuda::WgmmaGrid grid{kSplits * wgmma_tiles<kTokens>(o), 0, 1};
    grid.alone = kAlone;
    return grid;
  };
  return {name,
          [plan](const Operands& o, cudaStream_t s) {
            detail::cuda::launch_gemm_wgmma<T, kGroup, kTokens, kStages, kSub>(
                o.a, o.k, o.packed, o.sz, o.c, o.n, o.m, o.n, o.k, plan(o), o.workspace, o.workspace_bytes, s);
          },
          [plan](const Operands& o) { return describe_grid(plan(o)); }};
}

// dequantize + cuBLAS with a chunk size (0: the default).
Variant dequant(int64_t chunk_rows) {
  char name[96];
  std::snprintf(name, sizeof name, "dequant C%lld", static_cast<long long>(chunk_rows));
  return {name, [chunk_rows](const Operands& o, cudaStream_t s) {
            const Options options{Backend::kCuda, s};
            const detail::MmArgs args{DType::kBFloat16, o.a, o.k, reinterpret_cast<const uint8_t*>(o.packed),
                                      o.sz, o.c, o.n, o.m, o.n, o.k, o.group, &options};
            detail::cuda::dequant_gemm_with(args, chunk_rows);
          }};
}

// The candidates per M.
// gemv_mma per group size (whose scale/zero pairs take registers, and so
// occupancy, per chunk): one m-tile up to M = 8, two up to 16.
template <int kG>
std::vector<Variant> gemv_variants(int m) {
  std::vector<Variant> v;
  if (m <= 8) {
    v = {gemv<1, 2, 8, 4, false, false, 2, kG>(), gemv<1, 1, 8, 4, false, false, 3, kG>()};
    if constexpr (kG == 128) v.push_back(gemv<1, 4, 16, 2, false, false, 1, kG>());  // 16 warps
    if (m <= 4) {  // 12 warps, 2 blocks per SM (2 tiles of 4 steps: 0.70x-0.27x the speed, v19)
      v.push_back(gemv<1, 1, 12, 4, false, false, 2, kG>());
      if constexpr (kG <= 128) {
        v.push_back(gemv<1, 1, 12, 2, false, false, 2, kG>());
        v.push_back(gemv<1, 2, 12, 2, false, false, 2, kG>());
        // 16 warps, 2 blocks per SM (64 registers): 32 warps per SM where
        // the tiles give at most 2 blocks per SM (v22.0; with 4 steps it
        // spilled at groups 32 / 64 and ran 1.07-1.12x slower than 2 steps)
        v.push_back(gemv<1, 1, 16, 2, false, false, 2, kG>());
      }
    }
    if constexpr (kG <= 128) {  // chunks of 2 steps hold whole groups
      v.push_back(gemv<1, 2, 8, 2, false, false, 2, kG>());
      v.push_back(gemv<1, 2, 8, 2, false, false, 3, kG>());
      v.push_back(gemv<1, 4, 8, 2, false, false, 2, kG>());
      v.push_back(gemv<1, 1, 8, 2, false, false, 3, kG>());
    }
    if constexpr (kG == 128) {  // staged A
      for (Variant s : {gemv<1, 2, 8, 4, true, false, 2, kG>(), gemv<1, 2, 8, 2, true, false, 3, kG>(),
                        gemv<1, 4, 16, 2, true, true, 1, kG>(), gemv<1, 2, 8, 4, true, true, 2, kG>(),
                        gemv<1, 2, 16, 2, true, false, 1, kG>(), gemv<1, 2, 16, 2, true, true, 1, kG>(),
                        gemv<1, 2, 8, 2, true, false, 2, kG>()}) {
        v.push_back(s);
      }
    }
    if constexpr (kG <= 128) {  // scaled weights
      for (Variant s : {gemv<1, 2, 8, 2, false, true, 3, kG>(), gemv<1, 1, 8, 2, false, true, 3, kG>(),
                        gemv<1, 2, 8, 4, false, true, 2, kG>(), gemv<1, 4, 8, 2, false, true, 2, kG>()}) {
        v.push_back(s);
      }
    }
    if constexpr (kG <= 128) {  // two chunks a warp: the fastest three of v25's six
      for (Variant s : {gemv<1, 2, 8, 2, false, false, 2, kG, 2>(), gemv<1, 1, 12, 2, false, false, 2, kG, 2>(),
                        gemv<1, 2, 8, 2, true, true, 2, kG, 2>()}) {
        v.push_back(s);
      }
    }
  } else if (m <= 16) {
    v = {gemv<2, 4, 8, 4, false, false, 1, kG>(), gemv<2, 2, 8, 4, false, false, 1, kG>()};
    if constexpr (kG <= 128) {
      v.push_back(gemv<2, 2, 8, 2, false, false, 2, kG>());
      v.push_back(gemv<2, 4, 8, 2, false, false, 1, kG>());
    }
    if constexpr (kG == 128) {  // staged A
      for (Variant s : {gemv<2, 2, 8, 2, true, false, 2, kG>(), gemv<2, 2, 16, 2, true, false, 1, kG>(),
                        gemv<2, 2, 8, 4, true, false, 1, kG>()}) {
        v.push_back(s);
      }
    }
    if constexpr (kG <= 128) v.push_back(gemv<2, 2, 16, 2, false, true, 1, kG>());  // scaled weights
    if constexpr (kG >= 64 && kG <= 128) v.push_back(gemv<2, 4, 16, 2, false, true, 1, kG>());
    if constexpr (kG == 128) {
      for (Variant s : {gemv<2, 4, 16, 2, true, true, 1, kG>(), gemv<2, 4, 8, 2, true, true, 2, kG>(),
                        gemv<2, 2, 16, 2, true, true, 1, kG>()}) {
        v.push_back(s);
      }
    }
  }
  return v;
}

std::vector<Variant> classic_variants(int m, int group) {
  if (group != kGroup) {
    return group == 32 ? gemv_variants<32>(m) : group == 64 ? gemv_variants<64>(m) : gemv_variants<256>(m);
  }
  if (m > 256) {
    return {wgmma<256, 6, kStreamK>(),    wgmma<256, 6, kDirect>(),    wgmma<256, 4, kStreamK>(),
            wgmma<256, 4, kDirect>(),     wgmma<256, 6, kCluster>(),   wgmma<256, 3, kStreamK, 2>(),
            wgmma<256, 3, kDirect, 2>(),  wgmma<128, 6, kStreamK>(),   wgmma<128, 6, kDirect>(),
            wgmma<128, 4, kStreamK, 2>(), wgmma<128, 4, kDirect, 2>(), dequant(0)};
  }
  if (m <= 8) return gemv_variants<kGroup>(m);
  if (m <= 16) {
    std::vector<Variant> v = gemv_variants<kGroup>(m);
    for (Variant w : {gemm<2, 2, 8, 8>(), wgmma<16, 6, kDirect, 2>(), wgmma<16, 4, kStreamK, 2>(),
                      wgmma<16, 6, kStreamK, 2>(), wgmma<16, 6, kCluster, 2>(), wgmma_cluster<16, 4, 2, 2>(),
                      wgmma_cluster<16, 4, 3, 2>(), wgmma_cluster<16, 4, 4, 2>(), wgmma_cluster<16, 4, 8, 2>(),
                      wgmma_cluster<16, 6, 2, 2>(), wgmma_cluster<16, 6, 4, 2>(), wgmma_cluster<16, 8, 2, 2>(),
                      wgmma_cluster<16, 8, 4, 2>(), wgmma<16, 4, kDirect, 4>(), wgmma<16, 3, kDirect, 4>(),
                      wgmma<16, 4, kStreamK, 4>(), wgmma<16, 3, kStreamK, 4>(), wgmma<16, 4, kCluster, 4>(),
                      wgmma<16, 3, kCluster, 4>(), wgmma<16, 5, kDirect, 4>(), wgmma<16, 6, kDirect, 4>(),
                      wgmma<16, 5, kCluster, 4>(), wgmma<16, 6, kCluster, 4>(), wgmma_split<16, 4, 2, true, 4>(),
                      wgmma_split<16, 4, 2, true, 2>(), wgmma_split<16, 6, 2, true, 2>(),
                      wgmma_split<16, 4, 4, true, 4>(), wgmma_split<16, 4, 4, false, 2>()}) {
      v.push_back(w);
    }
    return v;
  }
  if (m <= 32) {
    return {gemv<4, 1, 8, 4, false, false, 1>(), gemm<4, 4, 8, 6>(),          wgmma<32, 6, kDirect, 2>(),
            wgmma<32, 4, kStreamK, 2>(),         wgmma<32, 6, kStreamK, 2>(), wgmma<32, 6, kCluster, 2>(),
            wgmma_cluster<32, 4, 2, 2>(),        wgmma_cluster<32, 4, 3, 2>(), wgmma_cluster<32, 4, 4, 2>(),
            wgmma_cluster<32, 4, 8, 2>(),        wgmma_cluster<32, 6, 2, 2>(), wgmma_cluster<32, 6, 4, 2>(),
            wgmma<32, 4, kDirect, 4>(),          wgmma<32, 3, kStreamK, 4>(), wgmma<32, 4, kCluster, 4>(),
            wgmma<32, 3, kCluster, 4>(),         wgmma_split<32, 4, 2, true, 2>(), wgmma_split<32, 6, 2, true, 2>(),
            wgmma_split<32, 4, 4, true, 2>(),    wgmma_split<32, 6, 4, true, 2>(), wgmma_split<32, 4, 4, false, 2>()};
  }
  if (m <= 64) {
    return {gemm<8, 2, 8, 6>(),        wgmma<64, 8, kStreamK>(),  wgmma<64, 8, kDirect>(),  wgmma<64, 8, kCluster>(),
            wgmma_cluster<64, 8, 2>(), wgmma_cluster<64, 8, 3>(), wgmma_cluster<64, 8, 4>(), wgmma_cluster<64, 8, 6>(),
            wgmma_cluster<64, 8, 8>(), wgmma_split<64, 8, 2, true>(), wgmma_split<64, 8, 4, true>(),
            wgmma_split<64, 8, 4, false>(), wgmma_split<64, 8, 8, false>(), dequant(0)};
  }
  if (m <= 128) {
    return {gemm<8, 2, 8, 6>(),         wgmma<128, 6, kStreamK>(),  wgmma<128, 6, kDirect>(),
            wgmma<128, 6, kCluster>(),  wgmma_cluster<128, 6, 2>(), wgmma_cluster<128, 6, 3>(),
            wgmma_cluster<128, 6, 4>(), wgmma<64, 8, kStreamK>(),   wgmma_cluster<64, 8, 2>(),
            wgmma_cluster<64, 8, 4>(),  dequant(0)};
  }
  return {wgmma<256, 6, kStreamK>(),  wgmma<256, 6, kDirect>(),   wgmma<128, 6, kStreamK>(),
          wgmma<128, 6, kDirect>(),   wgmma<256, 6, kCluster>(),  wgmma<128, 6, kCluster>(),
          wgmma<256, 3, kStreamK, 2>(), wgmma<256, 3, kDirect, 2>(), wgmma<128, 4, kStreamK, 2>(),
          wgmma<128, 4, kDirect, 2>(), wgmma<128, 4, kCluster, 2>(),
          wgmma_cluster<256, 6, 2>(), wgmma_cluster<256, 6, 3>(), wgmma_cluster<256, 6, 4>(),
          wgmma_cluster<128, 6, 2>(), wgmma_cluster<128, 6, 4>(), wgmma<64, 8, kDirect>(),
          wgmma<64, 8, kCluster>(),   dequant(0)};
}

// gemm_wgmma_ws's configurations per M (group 128), then the others.
std::vector<Variant> variants(int m, int group) {
  std::vector<Variant> v = classic_variants(m, group);
  v.push_back(dispatched());
  auto add = [&](std::vector<Variant> more) { v.insert(v.end(), more.begin(), more.end()); };
  if (group != kGroup || m <= 8) return v;
  if (m <= 16) {
    add(wgmma_ws_grids<16, 12>());
    add(wgmma_ws_grids<16, 24>());
    add(wgmma_ws_grids<16, 12, 2>());
    add(wgmma_ws_grids<16, 14, 2>());
    add({wgmma_ws_cluster<16, 12, 2, 1>(), wgmma_ws_cluster<16, 12, 4, 2>(), wgmma_ws_cluster<16, 12, 2, 2>()});
  } else if (m <= 32) {
    add(wgmma_ws_grids<32, 16>());
    add(wgmma_ws_grids<32, 10, 2>());
  } else if (m <= 64) {
    add(wgmma_ws_grids<64, 12>());
    add(wgmma_ws_grids<64, 15>());
    add(wgmma_ws_grids<64, 8, 1, 256>());
    add({wgmma_ws_cluster<64, 12, 2, 1>(), wgmma_ws_cluster<64, 12, 4, 1>()});
  } else {
    add(wgmma_ws_grids<128, 8>());
    if (m > 128) add(wgmma_ws_grids<256, 5>());
  }
  return v;
}

int main(int argc, char** argv) {
  cudaDeviceProp props;
  CHECK(cudaGetDeviceProperties(&props, 0));
  cudaStream_t stream;
  CHECK(cudaStreamCreate(&stream));
  std::vector<std::pair<int, int>> shapes = {{4096, 4096}, {4096, 14336}, {14336, 4096}, {8192, 8192},
                                             {8192, 28672}, {28672, 8192}};
  // Variant name parts separated by '|' (any of them); "-part": all others.
  // A filter that starts with "--" names the part "--" of gemv names
  // ("gemv M1 T2 W8 S2 -- -- B3"): it selects, not excludes.
  const char* filter = argc > 2 && argv[2][0] != '\0' ? argv[2] : nullptr;
  auto selected = [filter](const std::string& name) {
    if (filter == nullptr) return true;
    const bool exclude = filter[0] == '-' && filter[1] != '-';
    const std::string parts = filter + (exclude ? 1 : 0);
    bool found = false;
    for (size_t begin = 0, end; begin <= parts.size() && !found; begin = end + 1) {
      end = std::min(parts.find('|', begin), parts.size());
      found = name.find(parts.substr(begin, end - begin)) != std::string::npos;
    }
    return found != exclude;
  };
  const int group = argc > 3 ? std::atoi(argv[3]) : kGroup;
  if (group != 32 && group != 64 && group != 128 && group != 256) {
    std::fprintf(stderr, "group size must be 32, 64, 128 or 256, got %s\n", argv[3]);
    return 1;
  }
  std::vector<int> ms = {8, 16, 32, 64, 128, 256, 1024, 4096};
  if (argc > 4) {
    ms.clear();
    for (const char* s = argv[4]; *s != '\0';) {
      char* end = nullptr;
      const long m = std::strtol(s, &end, 10);
      if (end == s || m < 1 || m > 4096) {
        std::fprintf(stderr, "M list must be integers 1..4096 separated by commas, got %s\n", argv[4]);
        return 1;
      }
      ms.push_back(int(m));
      s = *end == ',' ? end + 1 : end;
    }
  }
  if (argc > 1 && argv[1][0] != '\0') {  // "KxN,KxN,..."
    shapes.clear();
    int k = 0, n = 0, used = 0;
    for (const char* s = argv[1]; std::sscanf(s, "%dx%d%n", &k, &n, &used) == 2; s += used + (s[used] == ',')) {
      shapes.emplace_back(k, n);
      if (s[used] == '\0') break;
    }
  }
  const int max_m = 4096;
  std::printf("%-28s %6s %6s %4s %9s %9s %9s\n", "variant", "K", "N", "M", "time us", "TB/s", "TFLOP/s");
  for (const auto& shape : shapes) {
    const int k = shape.first, n = shape.second;
    const bench::HostProblem p = bench::make_problem(max_m, n, k, group, DType::kBFloat16);
    const PackedShape ps = packed_shape(Backend::kCuda, n, k);
    const size_t wbytes = size_t(ps.rows * ps.cols), sbytes = p.sz.size();
    const int copies = int(std::ceil(3.0 * props.l2CacheSize / double(wbytes + sbytes))) + 1;
    uint8_t *wire, *packed, *sz, *a, *c, *c_ref;
    float* workspace;
    CHECK(cudaMalloc(&wire, p.q.size()));
    CHECK(cudaMalloc(&packed, wbytes * copies));
    CHECK(cudaMalloc(&sz, sbytes * copies));
    CHECK(cudaMalloc(&a, p.a.size()));
    CHECK(cudaMalloc(&c, size_t(max_m) * n * 2));
    CHECK(cudaMalloc(&c_ref, size_t(max_m) * n * 2));
    CHECK(cudaMalloc(&workspace, size_t(max_m) * n * 4));
    CHECK(cudaMemcpy(wire, p.q.data(), p.q.size(), cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(a, p.a.data(), p.a.size(), cudaMemcpyHostToDevice));
    detail::cuda::pack(wire, false, n, k, packed, Options{}, 0);
    for (int i = 0; i < copies; ++i) {
      if (i) CHECK(cudaMemcpy(packed + i * wbytes, packed, wbytes, cudaMemcpyDeviceToDevice));
      CHECK(cudaMemcpy(sz + i * sbytes, p.sz.data(), sbytes, cudaMemcpyHostToDevice));
    }
    for (int m : ms) {
      const Options options{Backend::kCuda, stream};
      detail::MmArgs args{DType::kBFloat16, a, k, packed, sz, c_ref, n, m, n, k, group, &options};
      detail::cuda::mm_with(detail::cuda::MmKernel::kDequantGemm, args);
      std::vector<uint16_t> ref(size_t(m) * n), got(ref.size());
      CHECK(cudaMemcpy(ref.data(), c_ref, ref.size() * 2, cudaMemcpyDeviceToHost));
      std::vector<std::pair<Variant, bool>> runs;  // each variant, and those that take it with PDL
      for (const Variant& v : variants(m, group)) {
        runs.emplace_back(v, false);
        if (v.pdl) runs.emplace_back(v, true);
      }
      for (const auto& [v, pdl] : runs) {
        const std::string name = v.name + (pdl ? " pdl" : "");
        if (!selected(name) || (name == "dispatch") != (filter != nullptr && std::string(filter) == "dispatch")) {
          continue;
        }
        auto operands = [&, pdl = pdl](int copy) {
          return Operands{(const T*)a, (const uint4*)(packed + copy * wbytes), (const T*)(sz + copy * sbytes),
                          (T*)c, workspace, size_t(max_m) * n * 4, m, n, k, group, pdl};
        };
        CHECK(cudaMemset(c, 0xff, ref.size() * 2));
        v.launch(operands(0), stream);
        CHECK(cudaStreamSynchronize(stream));
        CHECK(cudaGetLastError());
        CHECK(cudaMemcpy(got.data(), c, got.size() * 2, cudaMemcpyDeviceToHost));
        // Normwise: the reference rounds each weight to bf16, so single small
        // outputs may differ by more than 1% while the product is right.
        double err = 0, norm = 0;
        for (size_t i = 0; i < got.size(); ++i) {
          const double y = detail::bf16_to_float(ref[i]);
          err = std::max(err, std::fabs(detail::bf16_to_float(got[i]) - y));
          norm = std::max(norm, std::fabs(y));
        }
        cudaGraph_t graph;
        cudaGraphExec_t exec;
        CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
        for (int i = 0; i < 20; ++i) v.launch(operands(i % copies), stream);
        CHECK(cudaStreamEndCapture(stream, &graph));
        CHECK(cudaGraphInstantiate(&exec, graph, 0));
        cudaEvent_t e0, e1;
        CHECK(cudaEventCreate(&e0));
        CHECK(cudaEventCreate(&e1));
        std::vector<float> times;
        for (int r = 0; r < 23; ++r) {
          CHECK(cudaEventRecord(e0, stream));
          CHECK(cudaGraphLaunch(exec, stream));
          CHECK(cudaEventRecord(e1, stream));
          CHECK(cudaEventSynchronize(e1));
          float ms;
          CHECK(cudaEventElapsedTime(&ms, e0, e1));
          if (r >= 3) times.push_back(ms * 1000 / 20);
        }
        std::sort(times.begin(), times.end());
        const double us = times[times.size() / 2];
        const double bytes = double(n) * k / 2 + double(sbytes);
        std::printf("%-28s %6d %6d %4d %9.2f %9.3f %9.1f %s %s\n", name.c_str(), k, n, m, us, bytes / us / 1e6,
                    2.0 * m * n * k / us / 1e6, err <= 1e-2 * norm ? "" : "MISMATCH",
                    v.describe ? v.describe(operands(0)).c_str() : "");
        std::fflush(stdout);
        cudaGraphExecDestroy(exec);
        cudaGraphDestroy(graph);
        cudaEventDestroy(e0);
        cudaEventDestroy(e1);
      }
    }
    cudaFree(wire), cudaFree(packed), cudaFree(sz), cudaFree(a), cudaFree(c), cudaFree(c_ref), cudaFree(workspace);
  }
  return 0;
}
