// tune_gemv: a workbench for gemv_mma's launch configuration (llm.c style).
// Every variant below is the same kernel template with a different
// (tiles per block, steps per chunk, prefetch, min blocks per SM, warps);
// each is checked against the dispatched kernel, then timed as PERF.md asks
// (CUDA graph of 20 calls, weights rotated past 3x L2, median of 20 replays).
// The winners go into src/cuda/dispatch.cu; docs/cuda.md keeps the table.
//
//   build-dev/bench/int4mm_tune_gemv            (bf16, group 128)
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bench.h"
#include "cuda/cuda_internal.h"
#include "core/float16.h"
#include "cuda/gemv_mma.cuh"

using namespace int4mm;
using T = __nv_bfloat16;
constexpr int kGroup = 128;

#define CHECK(call)                                                                \
  do {                                                                             \
    cudaError_t e = (call);                                                        \
    if (e != cudaSuccess) {                                                        \
      std::fprintf(stderr, "%s failed: %s\n", #call, cudaGetErrorString(e));       \
      return 1;                                                                    \
    }                                                                              \
  } while (0)

struct Variant {
  std::string name;
  int tiles;
  int warps;
  std::function<void(const T*, const uint4*, const T*, T*, int, int, int, cudaStream_t)> launch;
};

template <int kMTiles, int kTiles, int kWarps, int kSteps, bool kPrefetch, int kMinBlocks>
Variant variant() {
  char name[96];
  std::snprintf(name, sizeof name, "T%d W%d S%d %s B%d", kTiles, kWarps, kSteps,
                kPrefetch ? "pf" : "--", kMinBlocks);
  return {name, kTiles, kWarps,
          [](const T* a, const uint4* w, const T* sz, T* c, int m, int n, int k, cudaStream_t s) {
            const int blocks = ((n + 15) / 16 + kTiles - 1) / kTiles;
            int4mm::detail::cuda::gemv_mma_kernel<T, kGroup, kMTiles, kTiles, kWarps, kSteps,
                                                  kPrefetch, kMinBlocks>
                <<<blocks, kWarps * 32, 0, s>>>(a, k, w, sz, c, n, m, n, k);
          }};
}

template <int kMTiles>
std::vector<Variant> variants() {
  return {variant<kMTiles, 1, 8, 4, true, 1>(),  variant<kMTiles, 1, 8, 4, true, 2>(),
          variant<kMTiles, 1, 8, 4, false, 3>(), variant<kMTiles, 1, 8, 8, false, 2>(),
          variant<kMTiles, 1, 4, 4, true, 4>(),  variant<kMTiles, 1, 4, 8, false, 4>(),
          variant<kMTiles, 2, 8, 4, false, 2>(), variant<kMTiles, 2, 8, 2, true, 2>(),
          variant<kMTiles, 2, 4, 4, false, 4>(), variant<kMTiles, 1, 8, 2, true, 3>()};
}

int main() {
  cudaDeviceProp props;
  CHECK(cudaGetDeviceProperties(&props, 0));
  cudaStream_t stream;
  CHECK(cudaStreamCreate(&stream));
  const std::vector<std::pair<int, int>> shapes = {{4096, 4096}, {4096, 14336}, {8192, 8192},
                                                   {8192, 28672}, {28672, 8192}, {4096, 6144}};
  std::printf("%-22s %6s %6s %4s %9s %9s\n", "variant", "K", "N", "M", "time us", "TB/s");
  for (const auto& [k, n] : shapes) {
    const bench::HostProblem p = bench::make_problem(16, n, k, kGroup, DType::kBFloat16);
    const PackedShape ps = packed_shape(Backend::kCuda, n, k);
    const size_t wbytes = size_t(ps.rows * ps.cols), sbytes = p.sz.size();
    const int copies = int(std::ceil(3.0 * props.l2CacheSize / double(wbytes + sbytes))) + 1;
    uint8_t *wire, *packed, *sz, *a, *c, *c_ref;
    CHECK(cudaMalloc(&wire, p.q.size()));
    CHECK(cudaMalloc(&packed, wbytes * copies));
    CHECK(cudaMalloc(&sz, sbytes * copies));
    CHECK(cudaMalloc(&a, p.a.size()));
    CHECK(cudaMalloc(&c, size_t(16) * n * 2));
    CHECK(cudaMalloc(&c_ref, size_t(16) * n * 2));
    CHECK(cudaMemcpy(wire, p.q.data(), p.q.size(), cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(a, p.a.data(), p.a.size(), cudaMemcpyHostToDevice));
    detail::cuda::pack(wire, false, n, k, packed, Options{}, 0);
    for (int i = 0; i < copies; ++i) {
      if (i) CHECK(cudaMemcpy(packed + i * wbytes, packed, wbytes, cudaMemcpyDeviceToDevice));
      CHECK(cudaMemcpy(sz + i * sbytes, p.sz.data(), sbytes, cudaMemcpyHostToDevice));
    }
    for (int m : {1, 8, 16}) {
      const Options options{Backend::kCuda, stream};
      detail::MmArgs args{DType::kBFloat16, a, k, packed, sz, c_ref, n, m, n, k, kGroup, &options};
      detail::cuda::mm_with(detail::cuda::MmKernel::kGemvMma, args);
      std::vector<uint16_t> ref(size_t(m) * n), got(ref.size());
      CHECK(cudaMemcpy(ref.data(), c_ref, ref.size() * 2, cudaMemcpyDeviceToHost));
      const auto list = m <= 8 ? variants<1>() : variants<2>();
      for (const Variant& v : list) {
        CHECK(cudaMemset(c, 0xff, ref.size() * 2));
        v.launch((const T*)a, (const uint4*)packed, (const T*)sz, (T*)c, m, n, k, stream);
        CHECK(cudaStreamSynchronize(stream));
        CHECK(cudaMemcpy(got.data(), c, got.size() * 2, cudaMemcpyDeviceToHost));
        double worst = 0;
        for (size_t i = 0; i < got.size(); ++i) {
          const float x = detail::bf16_to_float(got[i]), y = detail::bf16_to_float(ref[i]);
          worst = std::max(worst, double(std::fabs(x - y)) / (std::fabs(y) + 1e-2));
        }
        cudaGraph_t graph;
        cudaGraphExec_t exec;
        CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
        for (int i = 0; i < 20; ++i) {
          v.launch((const T*)a, (const uint4*)(packed + (i % copies) * wbytes),
                   (const T*)(sz + (i % copies) * sbytes), (T*)c, m, n, k, stream);
        }
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
        std::printf("%-22s %6d %6d %4d %9.2f %9.3f %s\n", v.name.c_str(), k, n, m, us,
                    bytes / us / 1e6, worst < 1e-2 ? "" : "MISMATCH");
        cudaGraphExecDestroy(exec);
        cudaGraphDestroy(graph);
        cudaEventDestroy(e0);
        cudaEventDestroy(e1);
      }
    }
    cudaFree(wire), cudaFree(packed), cudaFree(sz), cudaFree(a), cudaFree(c), cudaFree(c_ref);
  }
  return 0;
}
