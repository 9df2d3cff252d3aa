// The CUDA half of the benchmark harness (tools/bench.h), as PERF.md asks:
// every timing is a CUDA-graph replay of >= 20 calls, the weights rotated over
// enough copies to exceed 3x the L2 size, the median of >= 20 replays; the
// copy bandwidth and cuBLAS dense on the same shape and dtype are measured in
// the same run; every kernel's output is checked before it is timed.
//
// Records per shape and M:
//   ours            the dispatched kernel (gemv_mma, gemv_simt, dequant_cublas)
//   metal_port      the original Metal algorithm, ported (baseline; M <= 16)
//   gemm_mma,       the other tensor-core kernel where both apply (M 16..32),
//   gemv_mma        so that dispatch's switch point stays measured
//   dequant_cublas  dequantize + cuBLAS, where dispatch chose another kernel (M >= 16)
//   cublas_dense    cuBLAS on dense W in the same dtype (the peer)
//   copy            device-to-device copy of 1 GiB (the ceiling), once per run
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>

#include "bench.h"
#include "core/check.h"
#include "cuda/cuda_internal.h"

namespace int4mm::bench {
namespace {

namespace cu = detail::cuda;

void check(cudaError_t status, const char* call) {
  if (status != cudaSuccess) {
    throw Error(detail::concat("bench: ", call, " failed: ", cudaGetErrorString(status)));
  }
}

void check(cublasStatus_t status, const char* call) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    throw Error(detail::concat("bench: ", call, " failed: ", cublasGetStatusString(status)));
  }
}

// Device memory, freed on scope exit.
struct DeviceMemory {
  void* ptr = nullptr;
  explicit DeviceMemory(size_t bytes) { check(cudaMalloc(&ptr, std::max<size_t>(bytes, 1)), "cudaMalloc"); }
  ~DeviceMemory() { cudaFree(ptr); }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  template <typename T = void>
  T* as() const { return static_cast<T*>(ptr); }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median time of one call, in microseconds: `calls` enqueues captured in one
// graph, the graph replayed `replays` times after a warm-up.
double time_graph(cudaStream_t stream, int calls, int replays,
                  const std::function<void(int)>& enqueue) {
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
  try {
    for (int i = 0; i < calls; ++i) enqueue(i);
  } catch (...) {
    cudaStreamEndCapture(stream, &graph);
    throw;
  }
  check(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture");
  check(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "cudaEventCreate");
  check(cudaEventCreate(&stop), "cudaEventCreate");
  for (int i = 0; i < 3; ++i) check(cudaGraphLaunch(exec, stream), "cudaGraphLaunch");
  std::vector<double> times;
  for (int r = 0; r < replays; ++r) {
    check(cudaEventRecord(start, stream), "cudaEventRecord");
    check(cudaGraphLaunch(exec, stream), "cudaGraphLaunch");
    check(cudaEventRecord(stop, stream), "cudaEventRecord");
    check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    times.push_back(double(ms) * 1000.0 / calls);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  return median(times);
}

// A plain 16-byte-per-thread copy: on some parts it beats cudaMemcpyAsync.
__global__ void copy_kernel(const uint4* __restrict__ src, uint4* __restrict__ dst, size_t count) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < count;
       i += size_t(gridDim.x) * blockDim.x) {
    dst[i] = src[i];
  }
}

// Device-to-device copy bandwidth in GB/s, counting bytes read and written:
// the better of cudaMemcpyAsync and copy_kernel, so the ceiling is not low.
double copy_bandwidth(cudaStream_t stream, int replays, int sms) {
  const size_t bytes = size_t(1) << 30;
  DeviceMemory src(bytes), dst(bytes);
  check(cudaMemsetAsync(src.ptr, 1, bytes, stream), "cudaMemsetAsync");
  const double memcpy_us = time_graph(stream, 4, replays, [&](int) {
    check(cudaMemcpyAsync(dst.ptr, src.ptr, bytes, cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync");
  });
  const double kernel_us = time_graph(stream, 4, replays, [&](int) {
    copy_kernel<<<sms * 8, 512, 0, stream>>>(src.as<uint4>(), dst.as<uint4>(), bytes / 16);
    check(cudaGetLastError(), "copy_kernel");
  });
  std::fprintf(stderr, "bench: copy 1 GiB: cudaMemcpyAsync %.1f us, copy_kernel %.1f us\n", memcpy_us, kernel_us);
  return 2.0 * double(bytes) / (std::min(memcpy_us, kernel_us) * 1e-6) / 1e9;
}

cudaDataType_t cuda_type(DType dtype) {
  return dtype == DType::kFloat16 ? CUDA_R_16F : dtype == DType::kBFloat16 ? CUDA_R_16BF : CUDA_R_32F;
}

// The problem restricted to its first m rows of A.
HostProblem first_rows(const HostProblem& p, int64_t m) {
  HostProblem out = p;
  out.m = m;
  out.a.resize(size_t(m * p.k * dtype_size(p.dtype)));
  return out;
}

struct Timed {
  double us;
  double error;
};

}  // namespace

std::vector<Record> run_cuda(const Config& config) {
  if (!backend_available(Backend::kCuda)) throw Error("bench: no CUDA device is present");
  cudaDeviceProp props;
  check(cudaGetDeviceProperties(&props, 0), "cudaGetDeviceProperties");
  cudaStream_t stream;
  check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  cublasHandle_t cublas;
  check(cublasCreate(&cublas), "cublasCreate");
  check(cublasSetStream(cublas, stream), "cublasSetStream");
  const Options options{Backend::kCuda, stream};
  const int replays = std::max(config.repeats, 20);
  const int calls = 20;
  const double l2 = double(props.l2CacheSize);
  std::fprintf(stderr, "bench: %s, %d SMs, L2 %.0f MB\n", props.name, props.multiProcessorCount, l2 / 1e6);

  std::vector<Record> records;
  const double copy_gbs = copy_bandwidth(stream, replays, props.multiProcessorCount);
  {
    Record r;
    r.backend = "cuda";
    r.kernel = "copy";
    r.dtype = config.dtype;
    r.bytes = 2.0 * double(size_t(1) << 30);
    r.time_us = r.bytes / (copy_gbs * 1e9) * 1e6;
    r.bandwidth_gbs = copy_gbs;
    r.extra["pct_of_bandwidth"] = 100.0;
    records.push_back(r);
  }

  const DType dtype = config.dtype;
  const int64_t elem = dtype_size(dtype);
  const int64_t g = config.group_size;
  for (const Shape& shape : config.shapes) {
    const int64_t n = shape.n, k = shape.k;
    const int64_t max_m = *std::max_element(config.ms.begin(), config.ms.end());
    const HostProblem problem = make_problem(max_m, n, k, g, dtype);
    const PackedShape ps = packed_shape(Backend::kCuda, n, k);
    const size_t packed_bytes = size_t(ps.rows * ps.cols);
    const size_t sz_bytes = problem.sz.size();
    // Enough copies of the weights that the rotation overflows L2 three times.
    const int copies = int(std::clamp<double>(std::ceil(3 * l2 / double(packed_bytes + sz_bytes)) + 1, 1, 64));
    DeviceMemory wire(problem.q.size()), packed(packed_bytes * copies), sz(sz_bytes * copies);
    check(cudaMemcpy(wire.ptr, problem.q.data(), problem.q.size(), cudaMemcpyHostToDevice), "cudaMemcpy");
    convert_weight_to_int4pack(
        TensorView::contiguous(wire.ptr, DType::kUInt8, {n, k / 2}, Device::cuda(0)),
        TensorView::contiguous(packed.ptr, DType::kUInt8, {ps.rows, ps.cols}, Device::cuda(0)), 8,
        options);
    for (int i = 0; i < copies; ++i) {
      if (i > 0) {
        check(cudaMemcpyAsync(packed.as<char>() + i * packed_bytes, packed.ptr, packed_bytes,
                              cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync");
      }
      check(cudaMemcpyAsync(sz.as<char>() + i * sz_bytes, problem.sz.data(), sz_bytes,
                            cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync");
    }
    // The original Metal layout, for the baseline, rotated the same way.
    const bool metal_ok = n % 4 == 0 && g <= 128;
    std::unique_ptr<DeviceMemory> metal;
    if (metal_ok) {
      std::vector<uint8_t> host(problem.q.size());
      cu::metal_layout_from_wire(problem.q.data(), n, k, host.data());
      metal = std::make_unique<DeviceMemory>(host.size() * copies);
      for (int i = 0; i < copies; ++i) {
        check(cudaMemcpyAsync(metal->as<char>() + i * host.size(), host.data(), host.size(),
                              cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync");
      }
      check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    }
    // Dense W for cuBLAS, dequantized by us, rotated likewise.
    const size_t dense_bytes = size_t(n * k * elem);
    const int dense_copies = int(std::clamp<double>(std::ceil(3 * l2 / double(dense_bytes)) + 1, 1, 16));
    DeviceMemory dense(dense_bytes * dense_copies);
    dequantize(TensorView::contiguous(packed.ptr, DType::kUInt8, {ps.rows, ps.cols}, Device::cuda(0)), g,
               TensorView::contiguous(sz.ptr, dtype, {k / g, n, 2}, Device::cuda(0)),
               TensorView::contiguous(dense.ptr, dtype, {n, k}, Device::cuda(0)), options);
    for (int i = 1; i < dense_copies; ++i) {
      check(cudaMemcpyAsync(dense.as<char>() + i * dense_bytes, dense.ptr, dense_bytes,
                            cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync");
    }
    DeviceMemory a(problem.a.size()), c(size_t(max_m * n * elem));
    check(cudaMemcpy(a.ptr, problem.a.data(), problem.a.size(), cudaMemcpyHostToDevice), "cudaMemcpy");

    for (const int64_t m : config.ms) {
      const HostProblem sub = first_rows(problem, m);
      const double bytes = double(n * k / 2 + int64_t(sz_bytes) + m * k * elem + m * n * elem);
      auto args_for = [&](int i) {
        return detail::MmArgs{dtype, a.ptr, k, packed.as<uint8_t>() + (i % copies) * packed_bytes,
                              sz.as<char>() + (i % copies) * sz_bytes, c.ptr, n, m, n, k, g, &options};
      };
      // Checks one kernel's output (C poisoned first), then times it.
      auto measure = [&](const std::function<void(int)>& enqueue) {
        check(cudaMemsetAsync(c.ptr, 0xff, size_t(m * n * elem), stream), "cudaMemsetAsync");
        enqueue(0);
        std::vector<uint8_t> host(size_t(m * n * elem));
        check(cudaMemcpyAsync(host.data(), c.ptr, host.size(), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync");
        check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
        const double error = sampled_relative_error(sub, host.data());
        return Timed{time_graph(stream, calls, replays, enqueue), error};
      };
      auto record = [&](const std::string& kernel, const Timed& t, double weight_bytes, double op_bytes) {
        Record r;
        r.backend = "cuda";
        r.kernel = kernel;
        r.dtype = dtype;
        r.group_size = g;
        r.m = m, r.n = n, r.k = k;
        r.time_us = t.us;
        r.weight_bytes = weight_bytes;
        r.bytes = op_bytes;
        r.flops = 2.0 * double(m) * double(n) * double(k);
        r.max_rel_error = t.error;
        r.bandwidth_gbs = copy_gbs;
        r.extra["pct_of_bandwidth"] = op_bytes / (t.us * 1e-6) / (copy_gbs * 1e9) * 100.0;
        r.extra["floor_us"] = op_bytes / (copy_gbs * 1e9) * 1e6;
        records.push_back(r);
        return records.size() - 1;
      };

      // cuBLAS dense first: the others report their speedup over it.
      const cudaDataType_t type = cuda_type(dtype);
      const float alpha = 1.0f, beta = 0.0f;
      const Timed dense_t = measure([&](int i) {
        check(cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(m), int(k), &alpha,
                           dense.as<char>() + (i % dense_copies) * dense_bytes, type, int(k), a.ptr,
                           type, int(k), &beta, c.ptr, type, int(n), CUBLAS_COMPUTE_32F,
                           CUBLAS_GEMM_DEFAULT), "cublasGemmEx");
      });
      const double dense_op_bytes = double(dense_bytes + m * k * elem + m * n * elem);
      record("cublas_dense", dense_t, double(dense_bytes), dense_op_bytes);

      const cu::MmKernel chosen = cu::choose_kernel(args_for(0));
      std::vector<std::pair<std::string, std::function<void(int)>>> variants;
      variants.emplace_back(cu::kernel_name(chosen), [&](int i) { cu::mm_with(chosen, args_for(i)); });
      if (metal_ok && m <= 16) {
        variants.emplace_back("metal_port", [&](int i) {
          detail::MmArgs args = args_for(i);
          args.packed = metal->as<uint8_t>() + (i % copies) * problem.q.size();
          cu::metal_port_mm(args);
        });
      }
      if (chosen != cu::MmKernel::kGemmMma && m >= 8 && m <= 256 &&
          cu::supports(cu::MmKernel::kGemmMma, args_for(0))) {
        variants.emplace_back("gemm_mma", [&](int i) { cu::mm_with(cu::MmKernel::kGemmMma, args_for(i)); });
      }
      if (chosen != cu::MmKernel::kGemmWgmma && m >= 16 &&
          cu::supports(cu::MmKernel::kGemmWgmma, args_for(0))) {
        variants.emplace_back("gemm_wgmma", [&](int i) { cu::mm_with(cu::MmKernel::kGemmWgmma, args_for(i)); });
      }
      if (chosen != cu::MmKernel::kGemvMma && m <= 16 &&
          cu::supports(cu::MmKernel::kGemvMma, args_for(0))) {
        variants.emplace_back("gemv_mma", [&](int i) { cu::mm_with(cu::MmKernel::kGemvMma, args_for(i)); });
      }
      if (chosen != cu::MmKernel::kDequantGemm && m >= 16) {
        variants.emplace_back("dequant_cublas", [&](int i) { cu::mm_with(cu::MmKernel::kDequantGemm, args_for(i)); });
      }
      for (const auto& [name, enqueue] : variants) {
        const Timed t = measure(enqueue);
        const size_t idx = record(name, t, double(n * k / 2 + int64_t(sz_bytes)), bytes);
        records[idx].extra["speedup_vs_cublas"] = dense_t.us / t.us;
      }
    }
  }
  cublasDestroy(cublas);
  cudaStreamDestroy(stream);
  return records;
}

int selftest_cuda() {
  int failures = 0;
  cudaStream_t stream;
  check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  const Options options{Backend::kCuda, stream};
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    for (int64_t g : {32, 64, 128, 256}) {
      for (int64_t m : {1, 3, 17, 67}) {
        const int64_t n = 4100, k = g * 5;
        const HostProblem p = make_problem(m, n, k, g, dtype, uint32_t(m + g));
        const int64_t elem = dtype_size(dtype);
        const PackedShape ps = packed_shape(Backend::kCuda, n, k);
        DeviceMemory wire(p.q.size()), packed(size_t(ps.rows * ps.cols)), sz(p.sz.size()),
            a(p.a.size()), c(size_t(m * n * elem));
        check(cudaMemcpy(wire.ptr, p.q.data(), p.q.size(), cudaMemcpyHostToDevice), "cudaMemcpy");
        check(cudaMemcpy(sz.ptr, p.sz.data(), p.sz.size(), cudaMemcpyHostToDevice), "cudaMemcpy");
        check(cudaMemcpy(a.ptr, p.a.data(), p.a.size(), cudaMemcpyHostToDevice), "cudaMemcpy");
        const Device gpu = Device::cuda(0);
        const auto packed_view = TensorView::contiguous(packed.ptr, DType::kUInt8, {ps.rows, ps.cols}, gpu);
        convert_weight_to_int4pack(TensorView::contiguous(wire.ptr, DType::kUInt8, {n, k / 2}, gpu),
                                   packed_view, 8, options);
        weight_int4pack_mm(TensorView::contiguous(a.ptr, dtype, {m, k}, gpu), packed_view, g,
                           TensorView::contiguous(sz.ptr, dtype, {k / g, n, 2}, gpu),
                           TensorView::contiguous(c.ptr, dtype, {m, n}, gpu), options);
        std::vector<uint8_t> host(size_t(m * n * elem));
        check(cudaMemcpyAsync(host.data(), c.ptr, host.size(), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync");
        check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
        const double error = sampled_relative_error(p, host.data());
        // Float32 accumulation, one rounding to the dtype: far below these.
        const double bound = dtype == DType::kFloat32 ? 1e-5 : dtype == DType::kFloat16 ? 4e-3 : 3e-2;
        const bool ok = error <= bound;
        failures += !ok;
        std::printf("%s cuda %-8s group %3lld M %2lld N %lld K %lld: max rel error %.2e (bound %.0e)\n",
                    ok ? "ok  " : "FAIL", dtype_name(dtype), (long long)g, (long long)m,
                    (long long)n, (long long)k, error, bound);
      }
    }
  }
  cudaStreamDestroy(stream);
  return failures;
}

}  // namespace int4mm::bench
