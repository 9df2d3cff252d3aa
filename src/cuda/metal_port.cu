// metal_port: the original Apple-GPU algorithm (PyTorch PR 128965, the
// MLX-derived `int4pack_mm` shader), ported faithfully to CUDA as the
// baseline our kernels are measured against. A simdgroup is a warp.
//
// Layout (the original's own): uint8 [N, K/2], LOW nibble = even k.
// Each warp owns 4 output channels; lane l handles k = 4l .. 4l+3, then
// jumps 128 (32 lanes x 4). Activations are pre-multiplied by
// {1, 1/16, 1/256, 1/4096} so the masked nibbles of a 16-bit load need no
// shifts; the zero point is applied once per 4 k through sum(A).
//
// Limitations (the original's):
//   1. N % 4 == 0 (4 channels per warp, no tail).
//   2. group_size <= 128 (the scale pointer advances by 128 / group_size
//      groups per iteration, which is 0 for group 256).
//   3. One warp per 4 channels over the whole K: no split-K, 2-byte loads.
#include "cuda/common.cuh"
#include "cuda/cuda_internal.h"
#include "core/wire.h"

namespace int4mm::detail::cuda {
namespace {

template <typename T, int kGroupSize>
__global__ void metal_port_kernel(const T* __restrict__ a, int64_t lda,
                                  const uint8_t* __restrict__ b,  // [n, k/2], low nibble even k
                                  const T* __restrict__ sz, T* __restrict__ c, int64_t ldc, int n,
                                  int k) {
  constexpr int kThreadsPerChannel = 32;
  constexpr int kKsPerThread = 4;
  constexpr int kKJump = kThreadsPerChannel * kKsPerThread;  // 128
  const int lane = threadIdx.x & 31;
  const int n0 = ((blockIdx.x * blockDim.x + threadIdx.x) / 32) * 4;
  const int row = blockIdx.y;  // of A and C
  if (n0 >= n) return;

  const T* a_row = a + int64_t(row) * lda;
  const uint8_t* b_ptr = b + int64_t(n0) * (k / 2);
  const float4 act_div_scales = make_float4(1.0f, 1.0f / 16.0f, 1.0f / 256.0f, 1.0f / 4096.0f);

  int k0 = lane * kKsPerThread;
  int64_t sz_offset = (int64_t(k0 / kGroupSize) * n + n0) * 2;
  const int64_t sz_jump = int64_t(n) * 2 * (kKJump / kGroupSize);
  float result[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (; k0 < k; k0 += kKJump) {
    float scale[4], zero[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      scale[i] = to_float(sz[sz_offset + 2 * i]);
      zero[i] = to_float(sz[sz_offset + 2 * i + 1]) - scale[i] * 8.0f;
    }
    sz_offset += sz_jump;

    const float a0 = to_float(a_row[k0]), a1 = to_float(a_row[k0 + 1]);
    const float a2 = to_float(a_row[k0 + 2]), a3 = to_float(a_row[k0 + 3]);
    const float a_sum = a0 + a1 + a2 + a3;
    const float v0 = a0 * act_div_scales.x, v1 = a1 * act_div_scales.y;
    const float v2 = a2 * act_div_scales.z, v3 = a3 * act_div_scales.w;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint16_t bits = *reinterpret_cast<const uint16_t*>(b_ptr + (k0 + i * int64_t(k)) / 2);
      result[i] += scale[i] * (v0 * float(bits & 0x000f) + v1 * float(bits & 0x00f0) +
                               v2 * float(bits & 0x0f00) + v3 * float(bits & 0xf000));
      result[i] += a_sum * zero[i];
    }
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
#pragma unroll
    for (int offset = 1; offset < 32; offset *= 2) {
      result[i] += __shfl_down_sync(0xffffffffu, result[i], offset);
    }
  }
  if (lane == 0) {
#pragma unroll
    for (int i = 0; i < 4; ++i) c[int64_t(row) * ldc + n0 + i] = from_float<T>(result[i]);
  }
}

}  // namespace

void metal_layout_from_wire(const uint8_t* wire, int64_t n, int64_t k, uint8_t* metal) {
  for (int64_t i = 0; i < n * k / 2; ++i) metal[i] = uint8_t((wire[i] >> 4) | (wire[i] << 4));
}

bool metal_port_supports(const MmArgs& args) {
  return args.n % 4 == 0 && args.group_size <= 128 && args.m <= 65535;
}

void metal_port_mm(const MmArgs& args) {
  if (!metal_port_supports(args)) {
    fail("metal_port_mm", "needs N % 4 == 0 and group_size <= 128, got N=", args.n,
         " group_size=", args.group_size);
  }
  // The original dispatch: 64 threads per threadgroup, one warp per 4 channels.
  const dim3 block(64);
  const dim3 grid(unsigned((args.n / 4 * 32 + 63) / 64), unsigned(args.m));
  const cudaStream_t stream = stream_of(*args.options);
  dispatch_float(args.dtype, [&](auto tag) {
    using T = decltype(tag);
    dispatch_group_size(args.group_size, [&](auto group) {
      constexpr int kGroup = decltype(group)::value;
      if constexpr (kGroup <= 128) {
        metal_port_kernel<T, kGroup><<<grid, block, 0, stream>>>(
            static_cast<const T*>(args.a), args.lda, args.packed, static_cast<const T*>(args.sz),
            static_cast<T*>(args.c), args.ldc, int(args.n), int(args.k));
      }
    });
  });
  INT4MM_CUDA_CHECK_LAUNCH("metal_port_kernel");
}

}  // namespace int4mm::detail::cuda
