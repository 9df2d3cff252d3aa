// Shared by the CUDA backend's translation units: error checking that raises
// int4mm::Error (never exit; cuda_check.h), dtype traits, and small PTX
// helpers.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <utility>

#include "core/check.h"
#include "cuda/cuda_check.h"
#include "int4mm/int4mm.h"

namespace int4mm::detail::cuda {

// Makes `device` the current device until the end of the scope, as the
// frameworks' device guards do; restores the caller's device afterwards.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    INT4MM_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) INT4MM_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceGuard() {
    int current = previous_;
    if (cudaGetDevice(&current) == cudaSuccess && current != previous_) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

// Throws unless `ptr` is memory that `device` can address: device memory of
// that device, managed memory, or mapped (pinned) host memory. A plain host
// pointer labelled as CUDA would otherwise fault inside a kernel.
inline void check_device_pointer(const char* op, const char* arg, const void* ptr, int device) {
  cudaPointerAttributes attributes{};
  const cudaError_t status = cudaPointerGetAttributes(&attributes, ptr);
  if (status != cudaSuccess) {
    cudaGetLastError();  // not sticky: clear it
    fail(op, arg, " is not a pointer CUDA knows (", cudaGetErrorName(status), ")");
  }
  if (attributes.type == cudaMemoryTypeUnregistered) {
    fail(op, arg, " must be memory of cuda:", device, ", got ordinary host memory");
  }
  if (attributes.type == cudaMemoryTypeDevice && attributes.device != device) {
    fail(op, arg, " must be memory of cuda:", device, ", got memory of cuda:", attributes.device);
  }
}

inline cudaStream_t stream_of(const Options& options) {
  return static_cast<cudaStream_t>(options.stream);
}

// A per-device value asked of the driver once (attributes, occupancy):
// launches must not pay for the query. cache is the caller's static array;
// devices past kMaxCachedDevices are asked every time.
constexpr int kMaxCachedDevices = 64;
template <typename F>
int cached_per_device(std::atomic<int> (&cache)[kMaxCachedDevices], F&& query) {
  int device = 0;
  INT4MM_CUDA_CHECK(cudaGetDevice(&device));
  int value = device < kMaxCachedDevices ? cache[device].load(std::memory_order_relaxed) : 0;
  if (value == 0) {
    value = query(device);
    if (device < kMaxCachedDevices) cache[device].store(value, std::memory_order_relaxed);
  }
  return value;
}

// Lets `kernel` launch with `smem` bytes of dynamic shared memory on the
// current device (above 48 KB it must be asked for); never lowers what an
// earlier call allowed.
template <typename Kernel>
void allow_dynamic_smem(Kernel kernel, int smem) {
  cudaFuncAttributes attributes{};
  INT4MM_CUDA_CHECK(cudaFuncGetAttributes(&attributes, kernel));
  if (smem > attributes.maxDynamicSharedSizeBytes) {
    INT4MM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  }
}

// Blocks of `kernel` resident per SM with `threads` threads and `smem` bytes
// of dynamic shared memory (at least 1), asked once per device: `cache` is
// the caller's static array, one per kernel. A kernel with dynamic shared
// memory is first allowed that much.
template <typename Kernel>
int resident_blocks_per_sm(std::atomic<int> (&cache)[kMaxCachedDevices], Kernel kernel, int threads,
                           int smem) {
  return cached_per_device(cache, [&](int) {
    if (smem > 0) allow_dynamic_smem(kernel, smem);
    int blocks = 0;
    INT4MM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, threads, smem));
    return blocks > 1 ? blocks : 1;
  });
}

// Programmatic dependent launch (PDL, compute capability >= 9.0): a kernel
// launched with it may start its blocks while the kernel before it in the
// stream finishes, up to grid_dependency_wait(), which returns once that
// kernel has completed and its writes are visible. The kernel before lets
// its dependents start with grid_dependents_launch() (or by finishing).
// Without a PDL launch both are no-ops. The wait exists in code for sm_90
// and later only: pdl_allowed() asks that `kernel` was loaded from such code
// (not JIT-compiled from the compute_80 PTX), once per device (`cache` is
// the caller's static array), and that INT4MM_PDL is not "0".
__device__ __forceinline__ void grid_dependency_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void grid_dependents_launch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// False where the environment variable `name` is "0", else true: the
// switches that turn a launch feature off for an A/B measurement
// (INT4MM_PDL, INT4MM_CLUSTER, INT4MM_GEMV_X2).
inline bool switched_on(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr || std::string_view(value) != "0";
}

inline bool pdl_enabled() {
  static const bool enabled = switched_on("INT4MM_PDL");
  return enabled;
}

template <typename Kernel>
bool pdl_allowed(std::atomic<int> (&cache)[kMaxCachedDevices], Kernel kernel) {
  return pdl_enabled() && cached_per_device(cache, [&](int) {
                            cudaFuncAttributes attributes{};
                            INT4MM_CUDA_CHECK(cudaFuncGetAttributes(&attributes, kernel));
                            return attributes.ptxVersion >= 90 ? 1 : 2;  // 0 means "not asked yet"
                          }) == 1;
}

// The launch attribute that groups blocks into clusters of `blocks` along x.
inline cudaLaunchAttribute cluster_dimension(unsigned blocks) {
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeClusterDimension;
  attribute.val.clusterDim.x = blocks;
  attribute.val.clusterDim.y = 1;
  attribute.val.clusterDim.z = 1;
  return attribute;
}

// kernel<<<grid, block, smem, stream>>>(args...), with PDL where `pdl`, in
// clusters of `cluster` blocks along x where cluster > 1 (compute capability
// >= 9.0; grid.x a multiple of it).
template <typename... Params, typename... Args>
void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, bool pdl,
                   unsigned cluster, const char* name, Args&&... args) {
  cudaLaunchAttribute attributes[2] = {};
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  config.attrs = attributes;
  if (pdl) {
    cudaLaunchAttribute& attribute = attributes[config.numAttrs++];
    attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute.val.programmaticStreamSerializationAllowed = 1;
  }
  if (cluster > 1) attributes[config.numAttrs++] = cluster_dimension(cluster);
  check_cuda(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...), name, __FILE__, __LINE__);
}

// Dynamic shared memory (at least `smem`) with which one block of `kernel`
// fills an SM's shared memory, so that no other block can start beside it,
// allowed for `kernel`; asked once per device (`cache`: the caller's static
// array, one per kernel).
template <typename Kernel>
int lone_block_smem(std::atomic<int> (&cache)[kMaxCachedDevices], Kernel kernel, int smem) {
  return cached_per_device(cache, [&](int device) {
    int per_sm = 0, reserved = 0;
    INT4MM_CUDA_CHECK(cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device));
    INT4MM_CUDA_CHECK(cudaDeviceGetAttribute(&reserved, cudaDevAttrReservedSharedMemoryPerBlock, device));
    // Two blocks need 2 (bytes + reserved) <= per_sm: one past half of it.
    const int bytes = std::max(smem, (per_sm / 2 - reserved + 128) / 128 * 128);
    allow_dynamic_smem(kernel, bytes);
    return bytes;
  });
}

// Clusters of `cluster` blocks (threads, smem bytes of dynamic shared memory
// each, allowed as resident_blocks_per_sm allows it) that the device holds
// at once, asked once per device (`cache` is the caller's static array, one
// per kernel and cluster size).
template <typename Kernel>
int resident_clusters(std::atomic<int> (&cache)[kMaxCachedDevices], Kernel kernel, int threads, int smem,
                      int cluster) {
  return cached_per_device(cache, [&](int) {
           cudaLaunchAttribute attribute = cluster_dimension(unsigned(cluster));
           cudaLaunchConfig_t config{};
           config.gridDim = dim3(unsigned(cluster));
           config.blockDim = dim3(unsigned(threads));
           config.dynamicSmemBytes = size_t(smem);
           config.attrs = &attribute;
           config.numAttrs = 1;
           int clusters = 0;
           INT4MM_CUDA_CHECK(cudaOccupancyMaxActiveClusters(&clusters, kernel, &config));
           return clusters + 1;  // 0 means "not asked yet"
         }) -
         1;
}

// Calls body(p) with `bytes` of device memory from the stream's memory pool,
// freed (stream-ordered) once body has queued its work, also when it throws.
template <typename F>
void with_stream_memory(size_t bytes, cudaStream_t stream, F&& body) {
  void* memory = nullptr;
  INT4MM_CUDA_CHECK(cudaMallocAsync(&memory, bytes, stream));
  try {
    body(memory);
  } catch (...) {
    cudaFreeAsync(memory, stream);
    throw;
  }
  INT4MM_CUDA_CHECK(cudaFreeAsync(memory, stream));
}

// Element type <-> its packed pair, for the 16-bit activation dtypes.
template <typename T>
struct Pair;
template <>
struct Pair<half> {
  using type = half2;
};
template <>
struct Pair<__nv_bfloat16> {
  using type = __nv_bfloat162;
};

template <typename T>
__device__ __forceinline__ float to_float(T v) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else if constexpr (std::is_same_v<T, half>) {
    return __half2float(v);
  } else {
    return __bfloat162float(v);
  }
}

template <typename T>
__device__ __forceinline__ T from_float(float v) {
  if constexpr (std::is_same_v<T, float>) {
    return v;
  } else if constexpr (std::is_same_v<T, half>) {
    return __float2half_rn(v);
  } else {
    return __float2bfloat16_rn(v);
  }
}

// Calls f(T{}) with T the CUDA element type of `dtype` (a runtime value turned
// into a compile-time one, as MLX's dispatch helpers do).
template <typename F>
void dispatch_float(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kFloat16: f(half{}); break;
    case DType::kBFloat16: f(__nv_bfloat16{}); break;
    default: f(float{}); break;
  }
}

// Calls f(std::integral_constant<int, G>{}) for the group size.
template <typename F>
void dispatch_group_size(int64_t group_size, F&& f) {
  switch (group_size) {
    case 32: f(std::integral_constant<int, 32>{}); break;
    case 64: f(std::integral_constant<int, 64>{}); break;
    case 128: f(std::integral_constant<int, 128>{}); break;
    default: f(std::integral_constant<int, 256>{}); break;
  }
}

}  // namespace int4mm::detail::cuda
