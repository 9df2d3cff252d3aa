// Internal entry points of the CUDA backend that tests and benchmarks call
// directly (the public API reaches the backend only through core/backend.h).
// Host-only declarations: no CUDA headers needed.
#pragma once

#include <cstdint>
#include <string>

#include "core/backend.h"

namespace int4mm::detail::cuda {

// The CUDA layout packed on the host, for tests that check GPU packing byte
// for byte. wire is uint8 [n, k/2]; packed is packed_shape(n, k).
void pack_host(const uint8_t* wire, int64_t n, int64_t k, uint8_t* packed);

// The kernels a matmul can run, named in benchmarks and tests.
enum class MmKernel : int {
  kAuto,          // dispatch (dispatch.cu) chooses
  kGemvMma,       // 16-bit activations, M <= 32: tensor-core GEMV (gemv_mma.cuh)
  kGemvSimt,      // float32 activations, M <= 4: CUDA-core GEMV (gemv_simt.cuh)
  kGemmMma,       // 16-bit activations, middle M, group >= 64: tensor-core GEMM (gemm_mma.cuh)
  kGemmWgmma,     // 16-bit activations, large M, compute capability 9.0: wgmma GEMM (gemm_wgmma.cuh)
  kDequantGemm,   // any M: dequantize to the activation dtype + cuBLAS
};
const char* kernel_name(MmKernel kernel);
// True when `kernel` can run args (dtype, M, alignment).
bool supports(MmKernel kernel, const MmArgs& args);
// Runs one kernel (kAuto: the dispatch's choice). Throws if !supports.
void mm_with(MmKernel kernel, const MmArgs& args);
// The kernel dispatch picks for these arguments.
MmKernel choose_kernel(const MmArgs& args);

// kDequantGemm with an explicit chunk, for benchmarks (dequant_gemm.cu): W is
// dequantized in chunks of chunk_rows rows (<= 0: the default heuristic;
// rounded to a multiple of 16, balanced over the chunks).
void dequant_gemm_with(const MmArgs& args, int64_t chunk_rows);

// gemv_mma's launch shape (dispatch.cu's gemv_shape picks one per call):
// 16-row weight tiles per block, 64-k steps per chunk, warps per block,
// activations staged through shared memory, weights scaled in registers
// (rounded to the dtype, as dequantize + cuBLAS rounds them; no per-group
// fold), and chunks a warp holds (2: the next one's loads are issued before
// this one's math).
struct GemvShape {
  int tiles = 1;
  int steps = 4;
  int warps = 8;
  bool staged_a = false;
  bool scaled_w = false;
  int buffers = 1;
};

// kGemvMma with an explicit shape, for tests and benchmarks (dispatch.cu):
// one of the shapes that are compiled (gemv_built in dispatch.cu; the error
// for any other lists them).
void gemv_mma_with(const MmArgs& args, const GemvShape& shape);

// How gemm_wgmma spreads its tiles (128 weight rows x its activation rows)
// over blocks.
enum class WgmmaSplit : int {
  kNone,     // one block per tile, writing C directly
  kStreamK,  // a persistent grid: whole waves of tiles, the last partial wave
             // stream-K; the blocks of a split tile meet in a global workspace
  kCluster,  // as kStreamK, but where every tile is split evenly over 2..8
             // blocks and their clusters fit the GPU at once, those blocks
             // form a cluster and meet in its distributed shared memory
};

// The grid of one gemm_wgmma call: blocks, the tiles taken whole
// (data-parallel), blocks per cluster (1: no clusters); whether it is
// launched with programmatic dependent launch (grids without a workspace,
// where the device allows it); whether its shared memory is padded so that
// one block fills an SM (`alone`); the 64-k steps per pipeline stage
// of the kernel it launches, whether that kernel is gemm_wgmma_ws, whose
// copies run in a warpgroup of their own, and its weight rows per tile (all
// three set by gemm_wgmma_grid).
struct WgmmaGrid {
  int64_t blocks = 0;
  int64_t dp_tiles = 0;
  int cluster = 1;
  bool pdl = false;
  bool alone = false;
  int stage_steps = 0;
  bool copy_warps = false;
  int weight_rows = 128;
};

// kGemmWgmma with an explicit configuration, for tests and benchmarks
// (gemm.cu): activation rows per block (16, 32, 64, 128 or 256: the smallest
// that holds `tokens`), the split and the weight rows per block (128, or 256
// in gemm_wgmma_ws at 33..64 activation rows where it takes the operands;
// an error otherwise); gemm_wgmma_grid tells the grid that such a call
// launches on the current device.
void gemm_wgmma_with(const MmArgs& args, int tokens, WgmmaSplit split, int weight_rows = 128);
WgmmaGrid gemm_wgmma_grid(const MmArgs& args, int tokens, WgmmaSplit split, int weight_rows = 128);
// How kGemmWgmma's dispatch runs a call (gemm.cu): activation rows per
// block, the split, and weight rows per block; where it splits the call in
// two launches, the first column of the second (128-row tiles after whole
// waves of 256-row tiles; 0: one launch) and that launch's split.
struct WgmmaDispatch {
  int tokens;
  WgmmaSplit split;
  int64_t tail_column = 0;
  WgmmaSplit tail_split = WgmmaSplit::kNone;
  int weight_rows = 128;
};
WgmmaDispatch gemm_wgmma_dispatch(const MmArgs& args);
// True when the current device runs sm_90a code (compute capability 9.0).
bool wgmma_available();

// Multiprocessor count of the current device (cached per device).
int sm_count();

// The original Metal algorithm (PR 128965), ported faithfully as a baseline.
// It reads its own layout: uint8 [n, k/2] with the LOW nibble = even k.
// Limits (the original's): n % 4 == 0, group_size <= 128, 16-bit or float32.
void metal_layout_from_wire(const uint8_t* wire, int64_t n, int64_t k, uint8_t* metal);
bool metal_port_supports(const MmArgs& args);
void metal_port_mm(const MmArgs& args);  // args.packed is the Metal layout, device memory

}  // namespace int4mm::detail::cuda
