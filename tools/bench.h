// The benchmark harness shared by `int4mm bench` and `int4mm selftest`.
// tools/int4mm.cpp parses the command line and prints; each backend's file
// (bench_cpu.cpp, bench_cuda.cu) measures and returns records.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "int4mm/int4mm.h"

namespace int4mm::bench {

struct Shape {
  int64_t k = 0;
  int64_t n = 0;
};

struct Config {
  Backend backend = Backend::kAuto;   // resolved by the caller: kCpu or kCuda
  std::vector<Shape> shapes;          // K x N
  std::vector<int64_t> ms;
  DType dtype = DType::kBFloat16;
  int64_t group_size = 128;
  int threads = 0;                    // CPU worker threads; 0 = cores present
  int repeats = 20;                   // timed repetitions (median reported)
};

// One measurement: one kernel (ours, a baseline or a peer) on one shape.
struct Record {
  std::string backend;       // "cpu", "cuda"
  std::string kernel;        // e.g. "gemv_mma", "metal_port", "cublas_dense", "copy"
  DType dtype = DType::kBFloat16;
  int64_t group_size = 0;
  int64_t m = 0, n = 0, k = 0;
  double time_us = 0;        // median
  double weight_bytes = 0;   // N*K/2 + scales and zeros (0 for dense peers: their own bytes)
  double bytes = 0;          // every byte the op must touch (weights, sz, A, C)
  double flops = 0;          // 2*M*N*K
  double max_rel_error = -1; // vs the float64 reference on sampled outputs; -1 = not checked
  double bandwidth_gbs = 0;  // the machine's bandwidth measured in the same run
  std::map<std::string, double> extra;  // e.g. {"pct_of_bandwidth", 91.2}
};

// A random problem of M x K times quantized N x K (the default quantizer),
// with A and scales_and_zeros in `dtype`; host memory.
struct HostProblem {
  int64_t m = 0, n = 0, k = 0, group_size = 0;
  DType dtype = DType::kBFloat16;
  std::vector<uint8_t> a;   // [m, k] in dtype
  std::vector<uint8_t> q;   // wire [n, k/2]
  std::vector<uint8_t> sz;  // [k/g, n, 2] in dtype
};
HostProblem make_problem(int64_t m, int64_t n, int64_t k, int64_t group_size, DType dtype,
                         uint32_t seed = 1);

// max |C - C64| / max |C64| over a sample of output columns (all rows up to
// 8, and up to 64 columns), where C64 is the float64 reference. `c` is host
// memory [m, n] in problem.dtype.
double sampled_relative_error(const HostProblem& problem, const void* c);

std::vector<Record> run_cpu(const Config& config);   // bench_cpu.cpp
std::vector<Record> run_cuda(const Config& config);  // bench_cuda.cu (throws without CUDA)

// Correctness pass over every backend present, small odd shapes; returns the
// number of failures and prints one line per check.
int selftest_cpu();
int selftest_cuda();

}  // namespace int4mm::bench
