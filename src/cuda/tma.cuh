// Hopper's asynchronous copies for gemm_wgmma's warp-specialized kernel
// (sm_90a): the tensor memory accelerator (TMA) copying 2-D boxes of global
// memory into shared memory, and the shared-memory barriers (mbarrier) that
// count the bytes landed and the consumers done (PTX ISA, "cp.async.bulk.tensor"
// and "mbarrier"). Device functions are empty outside sm_90a code; the host
// side encodes tensor maps through the driver entry point that the runtime
// hands out, so the library does not link libcuda.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/wgmma.cuh"

namespace int4mm::detail::cuda {

__device__ __forceinline__ void mbarrier_init(uint32_t barrier, int count) {
#if defined(INT4MM_WGMMA)
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(barrier), "r"(count) : "memory");
#endif
}

// Makes initialized barriers visible to the async proxy (the TMA unit) and
// the other threads, before the block barrier that publishes them.
__device__ __forceinline__ void mbarrier_init_fence() {
#if defined(INT4MM_WGMMA)
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#endif
}

__device__ __forceinline__ void mbarrier_arrive(uint32_t barrier) {
#if defined(INT4MM_WGMMA)
  asm volatile("mbarrier.arrive.release.cta.shared::cta.b64 _, [%0];" ::"r"(barrier) : "memory");
#endif
}

// Arrives and sets the bytes that the phase's copies will bring.
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint32_t barrier, int bytes) {
#if defined(INT4MM_WGMMA)
  asm volatile("mbarrier.arrive.expect_tx.release.cta.shared::cta.b64 _, [%0], %1;" ::"r"(barrier), "r"(bytes)
               : "memory");
#endif
}

// Returns once the phase of parity `parity` has completed.
__device__ __forceinline__ void mbarrier_wait(uint32_t barrier, uint32_t parity) {
#if defined(INT4MM_WGMMA)
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "wait:\n"
      "mbarrier.try_wait.parity.acquire.cta.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra wait;\n"
      "}" ::"r"(barrier),
      "r"(parity)
      : "memory");
#endif
}

// The box of `map` at (x, y) (x fastest, in elements) into shared memory at
// `dst`, its bytes counted on `barrier`; zeros where the box leaves the tensor.
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap* map, int x, int y, uint32_t barrier) {
#if defined(INT4MM_WGMMA)
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];" ::
          "r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(x), "r"(y), "r"(barrier)
      : "memory");
#endif
}

// A barrier among the first `threads` threads of the block (ids 1..15; 0 is
// __syncthreads'), for the warps of one role.
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
#if defined(INT4MM_WGMMA)
  asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
#endif
}

// Sets this warpgroup's registers per thread to kCount (the warpgroup's
// warps all execute it): more (kIncrease) for warps that compute, from the
// pool that warps which only copy gave back with fewer.
template <bool kIncrease, int kCount>
__device__ __forceinline__ void set_max_registers() {
#if defined(INT4MM_WGMMA)
  if constexpr (kIncrease) {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(kCount));
  } else {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(kCount));
  }
#endif
}

// Host side: a 2-D tensor map of `elements`-wide rows of 2- or 4-byte
// elements (`element_bytes`), `rows` of them `row_bytes` apart, copied in
// boxes of box_x x box_y, zero-filled outside; `swizzle_128` lays each box
// row of 128 bytes out in the 128-byte swizzle that wgmma descriptors read.
// The address must be 16-byte aligned and row_bytes a multiple of 16.
CUtensorMap make_tensor_map_2d(const void* base, int element_bytes, int64_t elements, int64_t rows,
                               int64_t row_bytes, int box_x, int box_y, bool swizzle_128);

}  // namespace int4mm::detail::cuda
