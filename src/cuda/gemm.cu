// Host side of gemm_mma (gemm_mma.cuh: its float32 workspace, which the
// stream-K segments add into) and gemm_wgmma (gemm_wgmma.cuh): the launch
// configuration per M and shape.
#include "cuda/common.cuh"
#include "cuda/cuda_internal.h"
#include "cuda/gemm_mma.cuh"
#include "cuda/gemm_wgmma.cuh"
#include "cuda/gemm_wgmma_ws.cuh"

namespace int4mm::detail::cuda {
namespace {

// A stream-K launch's arrival counters to zero; the launch after this one
// may start at once and waits for it before it reads them.
__global__ void __launch_bounds__(256) zero_arrivals_kernel(int* __restrict__ arrivals, int count) {
  grid_dependents_launch();
  for (int i = int(threadIdx.x); i < count; i += int(blockDim.x)) arrivals[i] = 0;
}

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
// (docs/cuda.md, v5, v7, v11, v12): activation rows per block (the smallest
// of 16 .. 256 that holds `tokens`), pipeline stages and steps per stage. Up
// to 32 rows, stages of 2 steps: 6 of them for one block per tile and for
// clusters (whole K, or K / 2..8, per block: v11, 8192 x 8192 at M = 16
// 1.08x faster than with 4), 4 for stream-K's shorter runs (v7.1). At 16
// rows, where every block is alone on its SM (`lone`: a grid of at most one
// block per SM, which the 6-stage kernel pads to that), 4 stages of 4 steps
// in the shared memory the padding would leave unused: one barrier per 4
// steps (v12: 4096 x 14336 at M = 16 16.1 us against 17.0, 8192 x 8192 in
// pairs 18.0 against 18.6; level at 32 rows). Calls f(rows, stages, steps
// per stage) with the configuration as integral constants.
template <typename F>
void with_wgmma_config(int tokens, WgmmaSplit split, bool lone, F&& f) {
  using std::integral_constant;
  using One = integral_constant<int, 1>;
  using Two = integral_constant<int, 2>;
  auto paired = [&](auto tokens) {  // 2 steps per stage
    split == WgmmaSplit::kStreamK ? f(tokens, integral_constant<int, 4>{}, Two{})
                                  : f(tokens, integral_constant<int, 6>{}, Two{});
  };
  if (tokens <= 16) {
    lone ? f(integral_constant<int, 16>{}, integral_constant<int, 4>{}, integral_constant<int, 4>{})
         : paired(integral_constant<int, 16>{});
  } else if (tokens <= 32) {
    paired(integral_constant<int, 32>{});
  } else if (tokens <= 64) {
    f(integral_constant<int, 64>{}, integral_constant<int, 8>{}, One{});
  } else if (tokens <= 128) {
    f(integral_constant<int, 128>{}, integral_constant<int, 6>{}, One{});
  } else {
    f(integral_constant<int, 256>{}, integral_constant<int, 6>{}, One{});
  }
}

// gemm_wgmma_ws's configurations (64, 128 or 256 rows): one-step stages, 15
// at 64 rows, as many as fit (v15's workbench: 1.01-1.03x faster than 12 in
// clusters and as much slower one block per tile; v22's A/B through
// dispatch at M = 48 / 64 on six shapes: 0.994-1.012x, bf16 14336 x 4096
// 1.004-1.007x), 8 at 128 and 5 at 256
// (v13 workbench: 256 rows 1.03-1.23x faster than 128 at M = 1024-4096 on
// the four shapes measured). With 256 weight rows per block (`weight_rows`,
// 64 rows only): 8 stages (v17 workbench: as fast as 12, which do not fit
// at group 32).
// Calls f(rows, stages, blocks per SM, weight rows) with the configuration
// as integral constants.
template <typename F>
void with_wgmma_ws_config(int tokens, int weight_rows, F&& f) {
  using std::integral_constant;
  using One = integral_constant<int, 1>;
  using Narrow = integral_constant<int, kWgmmaRowsN>;
  using Wide = integral_constant<int, 2 * kWgmmaRowsN>;
  if (weight_rows == Wide::value) {
    f(integral_constant<int, 64>{}, integral_constant<int, 8>{}, One{}, Wide{});
    return;
  }
  tokens <= 64    ? f(integral_constant<int, 64>{}, integral_constant<int, 15>{}, One{}, Narrow{})
  : tokens <= 128 ? f(integral_constant<int, 128>{}, integral_constant<int, 8>{}, One{}, Narrow{})
                  : f(integral_constant<int, 256>{}, integral_constant<int, 5>{}, One{}, Narrow{});
}

// Calls f(T{}, std::integral_constant<int, kGroup>{}) for a 16-bit dtype (not
// for float32) and the group size.
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

bool zeroed_by_kernel() {
  static const bool by_kernel = switched_on("INT4MM_ZERO_KERNEL");
  return by_kernel;
}

void zero_arrivals(int* arrivals, int64_t count, cudaStream_t stream) {
  if (!zeroed_by_kernel()) {
    INT4MM_CUDA_CHECK(cudaMemsetAsync(arrivals, 0, size_t(count) * sizeof(int), stream));
    return;
  }
  zero_arrivals_kernel<<<1, 256, 0, stream>>>(arrivals, int(count));
  INT4MM_CUDA_CHECK_LAUNCH("zero_arrivals_kernel");
}

void gemm_mma_mm(const MmArgs& args) {
  const cudaStream_t stream = stream_of(*args.options);
  with_stream_memory(size_t(args.m * args.n) * sizeof(float), stream, [&](void* memory) {
    const auto workspace = static_cast<float*>(memory);
    dispatch_half_types(args, [&](auto tag, auto group) {
      constexpr int kGroup = decltype(group)::value;
      if constexpr (kGroup >= 64) run<decltype(tag), kGroup>(args, workspace, stream);
    });
  });
}

// Compute capability 9.0, and gemm_wgmma loaded from its sm_90a code: a
// kernel the driver compiled from the compute_80 PTX instead (which
// CUDA_FORCE_PTX_JIT=1 forces, and which tests the path newer GPUs take) has
// an empty body there.
bool wgmma_available() {
  static std::atomic<int> cache[kMaxCachedDevices] = {};
  return cached_per_device(cache, [](int device) {
           int major = 0, minor = 0;
           INT4MM_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
           INT4MM_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
           if (major != 9 || minor != 0) return 2;  // 0 means "not asked yet"
           cudaFuncAttributes attributes{};
           INT4MM_CUDA_CHECK(cudaFuncGetAttributes(&attributes, gemm_wgmma_kernel<half, 128, 64, 8, 1>));
           return attributes.ptxVersion >= 90 ? 1 : 2;
         }) == 1;
}

namespace {

// The grid of one configuration (with_wgmma_config's).
WgmmaGrid plan_config(const MmArgs& args, int tokens, WgmmaSplit split, bool lone) {
  WgmmaGrid grid;
  dispatch_half_types(args, [&](auto tag, auto group) {
    with_wgmma_config(tokens, split, lone, [&](auto rows, auto stages, auto sub) {
      grid = plan_gemm_wgmma<decltype(tag), decltype(group)::value, decltype(rows)::value, decltype(stages)::value,
                             decltype(sub)::value>(int(args.m), int(args.n), int(args.k), split);
      grid.stage_steps = decltype(sub)::value;
    });
  });
  return grid;
}

// gemm_wgmma's tiles (`weight_rows` x `tokens` activation rows) of a call.
int64_t wgmma_tiles(const MmArgs& args, int tokens, int weight_rows = kWgmmaRowsN) {
  return (args.n + weight_rows - 1) / weight_rows * ((args.m + tokens - 1) / tokens);
}

// One call's split, configuration and grid: kCluster where no clusters fit
// is kStreamK, whose configuration differs; at 16 rows a grid of at most one
// block per SM takes the lone blocks' configuration where that plans the
// same grid (clusters that fit two blocks to an SM may not fit one).
struct WgmmaCall {
  WgmmaSplit split;
  bool lone;
  WgmmaGrid grid;
};

// Whether a call takes gemm_wgmma_ws (INT4MM_WS=0: gemm_wgmma, for A/B
// runs; INT4MM_WS_CLUSTER=0: gemm_wgmma where tiles split over clusters):
// every grid of 128 or 256 rows; at 64 rows, where tiles split (clusters,
// stream-K) or there are at most as many as SMs. On an H100 (docs/cuda.md,
// v13, bf16, the means of two runs on one machine): 1.04-1.10x faster at
// M = 1024-4096 on the six bench shapes, 1.02-1.09x at M = 512, 1.06-1.23x
// at M = 128-256 on the four with N or K >= 14336; in clusters (v14, two
// runs each, bf16 and fp16): 4096 x 4096 at M = 256 1.14-1.15x, 8192 x 8192
// at M = 128 1.16-1.17x, M = 256 1.05-1.22x. At M = 64 (v15, two runs,
// bf16): 4096 x 14336 one block per tile 1.09x, 4096 x 4096 and 8192 x 8192
// in clusters 1.06x and 1.08x, 14336 x 4096 stream-K 1.14x (one block per
// SM: a tile splits 4 ways where gemm_wgmma's two blocks per SM split it 8),
// 8192 x 28672 and 28672 x 8192 1.03x; with more whole tiles than SMs,
// gemm_wgmma runs them two to an SM in one wave, where gemm_wgmma_ws (one
// block per SM) was 1.02-1.05x slower (workbench, 8192 x 28672). At
// 16 rows it ran 1.02-1.24x slower than the dispatched kernels (v13), and
// with two blocks per SM at most 1.04x faster, on shapes that meet their
// targets (v14): not taken.
bool takes_wgmma_ws(const MmArgs& args, int tokens, WgmmaSplit split) {
  static const bool enabled = switched_on("INT4MM_WS");
  static const bool clusters = switched_on("INT4MM_WS_CLUSTER");
  const bool rows =
      tokens > 64 || (tokens > 32 && (split != WgmmaSplit::kNone || wgmma_tiles(args, tokens) <= sm_count()));
  return enabled && rows && (split != WgmmaSplit::kCluster || clusters) &&
         wgmma_ws_supports(args.a, args.lda, args.packed, args.sz, int(args.n));
}

// Whether gemm_wgmma_ws's whole-tile grids are persistent (one block per SM;
// INT4MM_WS_PERSISTENT=0: one block per tile). v13: 1.01-1.05x faster at
// M = 4096, level at M = 1024.
bool ws_persistent() {
  static const bool persistent = switched_on("INT4MM_WS_PERSISTENT");
  return persistent;
}

// A gemm_wgmma_ws call's split and grid.
WgmmaCall plan_ws_call(const MmArgs& args, int tokens, WgmmaSplit split, int weight_rows) {
  const bool persistent = ws_persistent();
  WgmmaGrid grid;
  dispatch_half_types(args, [&](auto tag, auto group) {
    with_wgmma_ws_config(tokens, weight_rows, [&](auto rows, auto stages, auto blocks, auto rows_n) {
      grid = plan_gemm_wgmma_ws<decltype(tag), decltype(group)::value, decltype(rows)::value,
                                decltype(stages)::value, decltype(blocks)::value, decltype(rows_n)::value>(
          int(args.m), int(args.n), int(args.k), split, persistent);
    });
  });
  grid.copy_warps = true;
  grid.stage_steps = 1;
  grid.weight_rows = weight_rows;
  return {split == WgmmaSplit::kCluster && grid.cluster == 1 ? WgmmaSplit::kStreamK : split, false, grid};
}

WgmmaCall plan_call(const MmArgs& args, int tokens, WgmmaSplit split, int weight_rows = kWgmmaRowsN) {
  if (weight_rows != kWgmmaRowsN) {
    if (weight_rows != 2 * kWgmmaRowsN || tokens <= 32 || tokens > 64 ||
        !wgmma_ws_supports(args.a, args.lda, args.packed, args.sz, int(args.n))) {
      throw Error(concat("gemm_wgmma_with: weight_rows=", weight_rows, ", tokens=", tokens, ", n=", args.n,
                         ": 256 weight rows per block run only in gemm_wgmma_ws at tokens 33..64, with A, the "
                         "packed weights and scales_and_zeros 16-byte aligned, lda % 8 == 0 and n % 4 == 0; "
                         "elsewhere weight_rows=128"));
    }
    return plan_ws_call(args, tokens, split, weight_rows);
  }
  if (takes_wgmma_ws(args, tokens, split)) return plan_ws_call(args, tokens, split, weight_rows);
  WgmmaGrid grid = plan_config(args, tokens, split, false);
  if (split == WgmmaSplit::kCluster && grid.cluster == 1) {
    split = WgmmaSplit::kStreamK;
    grid = plan_config(args, tokens, split, false);
  }
  if (tokens <= 16 && split != WgmmaSplit::kStreamK && grid.blocks <= sm_count()) {
    const WgmmaGrid lone = plan_config(args, tokens, split, true);
    if (lone.blocks == grid.blocks && lone.cluster == grid.cluster) return {split, true, lone};
  }
  return {split, false, grid};
}

}  // namespace

WgmmaGrid gemm_wgmma_grid(const MmArgs& args, int tokens, WgmmaSplit split, int weight_rows) {
  return plan_call(args, tokens, split, weight_rows).grid;
}

namespace {

// Launches one planned call. scales_and_zeros' rows are ldsz (scale, zero)
// pairs apart: args.n, or the whole call's n where args is a range of its
// columns (only gemm_wgmma_ws's tensor maps take such a range).
void launch_call(const MmArgs& args, int tokens, const WgmmaCall& call, int64_t ldsz) {
  const cudaStream_t stream = stream_of(*args.options);
  dispatch_half_types(args, [&](auto tag, auto group) {
    using T = decltype(tag);
    constexpr int kGroup = decltype(group)::value;
    const auto a = static_cast<const T*>(args.a);
    const auto sz = static_cast<const T*>(args.sz);
    const auto c = static_cast<T*>(args.c);
    const int m = int(args.m), n = int(args.n), k = int(args.k);
    if (call.grid.copy_warps) {
      with_wgmma_ws_config(tokens, call.grid.weight_rows, [&](auto rows, auto stages, auto blocks, auto rows_n) {
        launch_gemm_wgmma_ws<T, kGroup, decltype(rows)::value, decltype(stages)::value, decltype(blocks)::value,
                             decltype(rows_n)::value>(a, args.lda, args.packed, sz, ldsz, c, args.ldc, m, n, k,
                                                      call.grid, nullptr, 0, stream);
      });
      return;
    }
    if (ldsz != args.n) throw Error("cuda: internal: gemm_wgmma was given a range of a call's columns");
    with_wgmma_config(tokens, call.split, call.lone, [&](auto rows, auto stages, auto sub) {
      launch_gemm_wgmma<T, kGroup, decltype(rows)::value, decltype(stages)::value, decltype(sub)::value>(
          a, args.lda, args.packed, sz, c, args.ldc, m, n, k, call.grid, nullptr, 0, stream);
    });
  });
}

// Columns [begin, args.n) of a call: the packed weights' 16-row tiles,
// scales_and_zeros' pairs and C's columns from `begin` (a multiple of 16).
MmArgs column_range(const MmArgs& args, int64_t begin) {
  MmArgs range = args;
  range.n = args.n - begin;
  range.packed += cuda_layout::word_offset(begin / cuda_layout::kTileN, 0, cuda_layout::padded_k(args.k) /
                                           cuda_layout::kStepK, 0, 0);
  range.sz = static_cast<const uint16_t*>(args.sz) + 2 * begin;
  range.c = static_cast<uint16_t*>(args.c) + begin;
  return range;
}

WgmmaDispatch plan_dispatch(const MmArgs& args) {
  // Rows per block: the smallest that holds M, 256 beyond; but one size
  // down for M = 65..256 where the larger tiles would leave half the SMs
  // without one and K <= 4096: 128 rows at M = 129..256 (v7.2: 4096 x 4096
  // at M = 256 ran in 26.3 us against 32.0; v8, with even stream-K splits:
  // 23.7 against 26.1-26.9, while 8192 x 8192 ran faster in 256 rows, 57.1
  // against 59.5), 64 at M = 65..128 (v11: 4096 x 4096 at M = 128 in
  // clusters, 14.1 us against 17.1; 8192 x 8192 ran faster in 128 rows).
  const int64_t sms = sm_count();
  const int64_t wide_tiles = (args.n + kWgmmaRowsN - 1) / kWgmmaRowsN;  // along N
  const bool few_tiles = 2 * wide_tiles < sms && args.k <= 4096;
  const int tokens = args.m <= 16                                   ? 16
                     : args.m <= 32                                 ? 32
                     : args.m <= 64 || (args.m <= 128 && few_tiles) ? 64
                     : args.m <= 128 || (args.m <= 256 && few_tiles) ? 128
                                                                      : 256;
  // One block per tile where whole waves of tiles keep >= 90% of the SMs
  // busy (or >= 80% in one wave on K <= 4096, where stream-K's split tiles
  // cost most, and at 16-32 rows, v7.2: 8192 x 28672 at M = 16 ran in 50.4 us
  // one block per tile, 55.6 stream-K); elsewhere the persistent grid, whose
  // last partial wave is stream-K (docs/cuda.md, v5: stream-K blocks start
  // their tiles at different k, so on large activations they share less in
  // L2).
  const int64_t tiles = wgmma_tiles(args, tokens);
  const int64_t slots = sms * wgmma_min_blocks(tokens);
  const double busy = tiles <= sms ? double(tiles) / double(sms)
                                   : double(tiles) / double((tiles + slots - 1) / slots * slots);
  const bool one_block_per_tile =
      busy >= 0.9 || ((args.k <= 4096 || tokens <= 32) && tiles <= slots && busy >= 0.8);
  if (one_block_per_tile) return {tokens, WgmmaSplit::kNone};
  // At 256 rows, whole waves and a partial one: the columns of the whole
  // waves' tiles in one launch (whole tiles, one block per SM), the rest in
  // 128-row tiles where they fit one wave: one block each, or split over
  // clusters where they fill at most half the SMs (stream-K where those
  // clusters cannot form, as kCluster falls back). Stream-K's last wave
  // hands each split tile's 128 KB of float32 parts between blocks (v14
  // workbench: on 4096 x 14336 at M = 1024, 448 tiles, no faster than 4
  // whole waves). On an H100 (docs/cuda.md, v16, against one grid):
  // 4096 x 14336 at M = 1024 1.05-1.07x, 4096 x 6144 at M = 768 / 1024
  // 1.26-1.29x / 1.17-1.19x, 5120 x 5120 at M = 1024 1.18x, 8192 x 10240
  // at M = 512 / 1024 1.07x / 1.06x; 8192 x 28672 at M = 512 / 768 level.
  // With the rest one block per tile where clusters take it: 1.18-1.20x
  // slower there. INT4MM_WS_TAIL=0: one grid, as before;
  // INT4MM_WS_TAIL_CLUSTER=0: the rest one block per tile.
  static const bool tail = switched_on("INT4MM_WS_TAIL");
  static const bool tail_clusters = switched_on("INT4MM_WS_TAIL_CLUSTER");
  if (tail && tokens == 256) {
    const int64_t head_wide = tiles / sms * sms / ((args.m + 255) / 256);  // the whole waves' tile columns
    const int64_t tail_tiles = (wide_tiles - head_wide) * ((args.m + 127) / 128);
    const WgmmaSplit tail_split =
        tail_clusters && 2 * tail_tiles <= sms ? WgmmaSplit::kCluster : WgmmaSplit::kNone;
    if (head_wide > 0 && tail_tiles <= sms && takes_wgmma_ws(args, 256, WgmmaSplit::kNone) &&
        takes_wgmma_ws(column_range(args, head_wide * kWgmmaRowsN), 128, tail_split)) {
      return {tokens, WgmmaSplit::kNone, head_wide * kWgmmaRowsN, tail_split};
    }
  }
  // Split tiles meet in a cluster's shared memory where they can (v10;
  // INT4MM_CLUSTER=0: in the global workspace, as before).
  static const bool clusters = switched_on("INT4MM_CLUSTER");
  const WgmmaSplit split = clusters ? WgmmaSplit::kCluster : WgmmaSplit::kStreamK;
  // At 64 rows, where gemm_wgmma_ws's tiles would split stream-K (no
  // clusters: K > 8192, or more tiles than fit) and tiles of 256 weight
  // rows give each block of one per SM at least 96 steps (K = 6144) of
  // them: 256 weight rows per block, stream-K, which read each activation
  // tile once per 256 weight rows instead of 128, and hand on twice the
  // float32 part per split tile. On an H100 (docs/cuda.md, v17: two rounds,
  // then the final build once): 28672 x 8192 and 8192 x 28672 (108-112
  // steps a block) at M = 33-64 1.05-1.13x faster; 5120 x 13824 (33 steps)
  // 1.07x slower, 8192 x 14336 and 14336 x 8192 (54-56) level; in clusters
  // (8192 x 8192, 4096 x 4096) 1.3-1.4x slower, split over 8 blocks
  // (14336 x 4096) 1.12x.
  // INT4MM_WS_WIDE=0: 128 rows everywhere.
  static const bool wide = switched_on("INT4MM_WS_WIDE");
  if (wide && tokens == 64 && takes_wgmma_ws(args, tokens, split)) {
    const int64_t tiles_256 = wgmma_tiles(args, tokens, 2 * kWgmmaRowsN);
    const int64_t steps = (args.k + 63) / 64;
    if (plan_call(args, tokens, split).split == WgmmaSplit::kStreamK && tiles_256 * steps >= 96 * sms) {
      return {tokens, WgmmaSplit::kStreamK, 0, WgmmaSplit::kNone, 2 * kWgmmaRowsN};
    }
  }
  return {tokens, split};
}

}  // namespace

void gemm_wgmma_with(const MmArgs& args, int tokens, WgmmaSplit split, int weight_rows) {
  launch_call(args, tokens, plan_call(args, tokens, split, weight_rows), args.n);
}

WgmmaDispatch gemm_wgmma_dispatch(const MmArgs& args) { return plan_dispatch(args); }

void gemm_wgmma_mm(const MmArgs& args) {
  const WgmmaDispatch planned = plan_dispatch(args);
  if (planned.tail_column == 0) {
    gemm_wgmma_with(args, planned.tokens, planned.split, planned.weight_rows);
    return;
  }
  MmArgs head = args;
  head.n = planned.tail_column;
  launch_call(head, 256, plan_call(head, 256, WgmmaSplit::kNone), args.n);
  const MmArgs rest = column_range(args, planned.tail_column);
  launch_call(rest, 128, plan_call(rest, 128, planned.tail_split), args.n);
}

}  // namespace int4mm::detail::cuda
