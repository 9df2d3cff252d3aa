// Packing into the CUDA layout (layout.h) and back, on the GPU, plus the
// host-side packer that the tests compare the GPU result with byte for byte.
//
// pack:   one thread per packed uint32 word; each gathers its 8 nibbles from
//         q (int32 [n, k] or wire uint8 [n, k/2]); padding rows/columns get 0.
//         An int32 value outside 0..15 is recorded (smallest linear index) and
//         reported by the host as int4mm::Error after a stream synchronize:
//         packing is a one-time, load-time operation, and a clear error beats
//         a corrupted neighbour nibble (CONTRACT.md).
// unpack: one thread per output element pair (two k of one row).
#include <algorithm>
#include <climits>
#include <cstring>

#include "cuda/common.cuh"
#include "cuda/cuda_internal.h"
#include "cuda/layout.h"
#include "core/wire.h"

namespace int4mm::detail::cuda {
namespace {

namespace L = cuda_layout;

constexpr int kThreads = 256;

int grid_for(int64_t items) {
  return int(std::min<int64_t>((items + kThreads - 1) / kThreads, 65535 * 4));
}

__device__ __forceinline__ uint32_t wire_nibble_device(const uint8_t* wire, int64_t k, int64_t row,
                                                       int64_t col) {
  const uint8_t byte = wire[row * (k / 2) + (col >> 1)];
  return (col & 1) ? (byte & 0xfu) : (byte >> 4);
}

template <bool kInt32>
__global__ void pack_kernel(const void* __restrict__ q, int64_t n, int64_t k, int64_t steps,
                            int64_t words, uint32_t* __restrict__ packed,
                            unsigned long long* __restrict__ first_bad) {
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < words;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int word = int(idx & 3);
    const int lane = int((idx >> 2) & 31);
    const int64_t tile_step = idx >> 7;  // tile * steps + step
    const int64_t tile = tile_step / steps;
    const int64_t step = tile_step % steps;
    uint32_t out = 0;
#pragma unroll
    for (int nibble = 0; nibble < 8; ++nibble) {
      const L::NibbleSource src = L::nibble_source(lane, word, nibble);
      const int64_t row = tile * L::kTileN + src.row;
      const int64_t col = step * L::kStepK + src.k;
      uint32_t v = 0;
      if (row < n && col < k) {
        if constexpr (kInt32) {
          const int32_t x = static_cast<const int32_t*>(q)[row * k + col];
          if (uint32_t(x) > 15u) atomicMin(first_bad, (unsigned long long)(row * k + col));
          v = uint32_t(x) & 0xfu;
        } else {
          v = wire_nibble_device(static_cast<const uint8_t*>(q), k, row, col);
        }
      }
      out |= v << (4 * nibble);
    }
    packed[idx] = out;
  }
}

__device__ __forceinline__ uint32_t packed_nibble(const uint8_t* packed, int64_t steps, int64_t row,
                                                  int64_t col) {
  const L::NibbleLocation loc = L::nibble_location(int(row % L::kTileN), int(col % L::kStepK));
  const int64_t off = L::word_offset(row / L::kTileN, col / L::kStepK, steps, loc.lane, loc.word);
  return (*reinterpret_cast<const uint32_t*>(packed + off) >> (4 * loc.nibble)) & 0xfu;
}

template <bool kInt32>
__global__ void unpack_kernel(const uint8_t* __restrict__ packed, int64_t n, int64_t k,
                              int64_t steps, void* __restrict__ q) {
  const int64_t pairs = n * (k / 2);
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < pairs;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = idx / (k / 2);
    const int64_t col = 2 * (idx % (k / 2));
    const uint32_t even = packed_nibble(packed, steps, row, col);
    const uint32_t odd = packed_nibble(packed, steps, row, col + 1);
    if constexpr (kInt32) {
      static_cast<int32_t*>(q)[2 * idx] = int32_t(even);
      static_cast<int32_t*>(q)[2 * idx + 1] = int32_t(odd);
    } else {
      static_cast<uint8_t*>(q)[idx] = uint8_t(even << 4 | odd);
    }
  }
}

}  // namespace

PackedShape packed_shape(int64_t n, int64_t k) {
  return {L::padded_n(n), L::padded_k(k) / 2};
}

void pack(const void* q, bool q_is_int32, int64_t n, int64_t k, uint8_t* packed,
          const Options& options, int device) {
  const DeviceGuard guard(device);
  check_device_pointer("convert_weight_to_int4pack", "q", q, device);
  check_device_pointer("convert_weight_to_int4pack", "packed", packed, device);
  const cudaStream_t stream = stream_of(options);
  const int64_t steps = L::padded_k(k) / L::kStepK;
  const int64_t words = L::padded_n(n) * L::padded_k(k) / 8;
  auto* out = reinterpret_cast<uint32_t*>(packed);
  if (!q_is_int32) {
    pack_kernel<false><<<grid_for(words), kThreads, 0, stream>>>(q, n, k, steps, words, out, nullptr);
    INT4MM_CUDA_CHECK_LAUNCH("pack_kernel");
    return;
  }
  unsigned long long* first_bad = nullptr;
  INT4MM_CUDA_CHECK(cudaMallocAsync(&first_bad, sizeof(*first_bad), stream));
  INT4MM_CUDA_CHECK(cudaMemsetAsync(first_bad, 0xff, sizeof(*first_bad), stream));
  pack_kernel<true><<<grid_for(words), kThreads, 0, stream>>>(q, n, k, steps, words, out, first_bad);
  const cudaError_t launch = cudaGetLastError();
  unsigned long long bad = ULLONG_MAX;
  const cudaError_t copy = cudaMemcpyAsync(&bad, first_bad, sizeof(bad), cudaMemcpyDeviceToHost, stream);
  const cudaError_t release = cudaFreeAsync(first_bad, stream);
  INT4MM_CUDA_CHECK(launch);
  INT4MM_CUDA_CHECK(copy);
  INT4MM_CUDA_CHECK(release);
  INT4MM_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (bad != ULLONG_MAX) {
    int32_t value = 0;
    INT4MM_CUDA_CHECK(cudaMemcpy(&value, static_cast<const int32_t*>(q) + bad, sizeof(value),
                                 cudaMemcpyDeviceToHost));
    fail("convert_weight_to_int4pack", "q values must be in 0..15, got ", value, " at q[",
         int64_t(bad) / k, "][", int64_t(bad) % k, "]");
  }
}

void unpack(const uint8_t* packed, int64_t n, int64_t k, void* q, bool q_is_int32,
            const Options& options, int device) {
  const DeviceGuard guard(device);
  check_device_pointer("unpack", "packed", packed, device);
  check_device_pointer("unpack", "q", q, device);
  const cudaStream_t stream = stream_of(options);
  const int64_t steps = L::padded_k(k) / L::kStepK;
  const int grid = grid_for(n * k / 2);
  if (q_is_int32) {
    unpack_kernel<true><<<grid, kThreads, 0, stream>>>(packed, n, k, steps, q);
  } else {
    unpack_kernel<false><<<grid, kThreads, 0, stream>>>(packed, n, k, steps, q);
  }
  INT4MM_CUDA_CHECK_LAUNCH("unpack_kernel");
}

void pack_host(const uint8_t* wire, int64_t n, int64_t k, uint8_t* packed) {
  const PackedShape shape = packed_shape(n, k);
  const int64_t steps = L::padded_k(k) / L::kStepK;
  std::fill(packed, packed + shape.rows * shape.cols, uint8_t(0));
  for (int64_t row = 0; row < n; ++row) {
    for (int64_t col = 0; col < k; ++col) {
      const L::NibbleLocation loc = L::nibble_location(int(row % L::kTileN), int(col % L::kStepK));
      const int64_t off = L::word_offset(row / L::kTileN, col / L::kStepK, steps, loc.lane, loc.word);
      uint32_t word;
      std::memcpy(&word, packed + off, 4);
      word |= uint32_t(wire_nibble(wire + row * (k / 2), col)) << (4 * loc.nibble);
      std::memcpy(packed + off, &word, 4);
    }
  }
}

}  // namespace int4mm::detail::cuda
