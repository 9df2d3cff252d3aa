// Error checking of CUDA runtime calls that raises int4mm::Error (never
// exit). Host-only: common.cuh includes it for the kernels' translation
// units, tests include it directly.
#pragma once

#include <cuda_runtime.h>

#include "core/check.h"

namespace int4mm::detail::cuda {

// Throws int4mm::Error naming the call, file and line. The runtime also keeps
// a failed call's error as the thread's last error, which the next launch
// check (cudaGetLastError) would report as its own: it is cleared here, so
// that an error is reported once, by the call that caused it. Errors that
// leave the context unusable cannot be cleared: every later call reports
// them.
inline void check_cuda(cudaError_t status, const char* call, const char* file, int line) {
  if (status != cudaSuccess) {
    static_cast<void>(cudaGetLastError());
    throw Error(concat("cuda: ", call, " failed at ", file, ":", line, ": ", cudaGetErrorName(status), " (",
                       cudaGetErrorString(status), ")"));
  }
}

}  // namespace int4mm::detail::cuda

#define INT4MM_CUDA_CHECK(call) ::int4mm::detail::cuda::check_cuda((call), #call, __FILE__, __LINE__)
// After a <<<launch>>>: reports configuration errors without synchronizing.
#define INT4MM_CUDA_CHECK_LAUNCH(name) \
  ::int4mm::detail::cuda::check_cuda(cudaGetLastError(), name, __FILE__, __LINE__)
