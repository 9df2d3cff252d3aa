// A stand-in for tools/bench_cpu.cpp until the CPU backend's own harness lands
// (tools/CMakeLists.txt picks whichever exists): it times Backend::kCpu
// plainly, with no peers and no bandwidth measurement, so that `int4mm bench`
// and `int4mm selftest` work end to end meanwhile.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "bench.h"

namespace int4mm::bench {
namespace {

struct PackedWeight {
  std::vector<uint8_t> bytes;
  TensorView view;
};

PackedWeight pack_cpu(const HostProblem& p, const Options& options) {
  const PackedShape shape = packed_shape(Backend::kCpu, p.n, p.k);
  PackedWeight w;
  w.bytes.resize(size_t(shape.rows * shape.cols));
  w.view = TensorView::contiguous(w.bytes.data(), DType::kUInt8, {shape.rows, shape.cols});
  convert_weight_to_int4pack(
      TensorView::contiguous(const_cast<uint8_t*>(p.q.data()), DType::kUInt8, {p.n, p.k / 2}),
      w.view, 8, options);
  return w;
}

// C = A[:m] @ W^T with the CPU backend; c must hold m * n elements.
void run_mm(const HostProblem& p, int64_t m, const PackedWeight& w, std::vector<uint8_t>& c,
            const Options& options) {
  const TensorView a =
      TensorView::contiguous(const_cast<uint8_t*>(p.a.data()), p.dtype, {m, p.k});
  const TensorView sz = TensorView::contiguous(const_cast<uint8_t*>(p.sz.data()), p.dtype,
                                               {p.k / p.group_size, p.n, 2});
  weight_int4pack_mm(a, w.view, p.group_size, sz,
                     TensorView::contiguous(c.data(), p.dtype, {m, p.n}), options);
}

// The sampled check of the first m rows: A's rows are a prefix of p.a.
double error_of_rows(HostProblem& p, int64_t m, const std::vector<uint8_t>& c) {
  const int64_t all = p.m;
  p.m = m;
  const double err = sampled_relative_error(p, c.data());
  p.m = all;
  return err;
}

}  // namespace

std::vector<Record> run_cpu(const Config& config) {
  Options options;
  options.backend = Backend::kCpu;
  options.threads = config.threads;
  std::vector<Record> records;
  const int64_t max_m = config.ms.empty() ? 0 : *std::max_element(config.ms.begin(), config.ms.end());
  for (const Shape& shape : config.shapes) {
    HostProblem p = make_problem(max_m, shape.n, shape.k, config.group_size, config.dtype);
    const PackedWeight w = pack_cpu(p, options);
    for (int64_t m : config.ms) {
      std::vector<uint8_t> c(size_t(m * p.n * dtype_size(p.dtype)));
      run_mm(p, m, w, c, options);  // warm-up, and the result we check
      Record r;
      r.backend = "cpu";
      r.kernel = "cpu";
      r.dtype = p.dtype;
      r.group_size = p.group_size;
      r.m = m, r.n = p.n, r.k = p.k;
      r.max_rel_error = error_of_rows(p, m, c);
      std::vector<double> times;
      for (int i = 0; i < std::max(1, config.repeats); ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        run_mm(p, m, w, c, options);
        times.push_back(std::chrono::duration<double, std::micro>(
                            std::chrono::steady_clock::now() - t0).count());
      }
      std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
      r.time_us = times[times.size() / 2];
      const double esize = double(dtype_size(p.dtype));
      r.weight_bytes = double(p.n * p.k / 2) + double(p.sz.size());
      r.bytes = r.weight_bytes + double(m * p.k + m * p.n) * esize;
      r.flops = 2.0 * double(m) * double(p.n) * double(p.k);
      records.push_back(r);
    }
  }
  return records;
}

int selftest_cpu() {
  int failures = 0;
  for (Backend backend : {Backend::kReference, Backend::kCpu}) {
    for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
      for (int64_t group_size : {32, 128}) {
        // Odd M and N, K of several groups: tails everywhere.
        const int64_t m = 3, n = 19, k = 4 * group_size;
        HostProblem p = make_problem(m, n, k, group_size, dtype, 7);
        Options options;
        options.backend = backend;
        const PackedShape shape = packed_shape(backend, n, k);
        std::vector<uint8_t> packed(size_t(shape.rows * shape.cols));
        PackedWeight w;
        w.view = TensorView::contiguous(packed.data(), DType::kUInt8, {shape.rows, shape.cols});
        convert_weight_to_int4pack(
            TensorView::contiguous(p.q.data(), DType::kUInt8, {n, k / 2}), w.view, 8, options);
        std::vector<uint8_t> c(size_t(m * n * dtype_size(dtype)));
        run_mm(p, m, w, c, options);
        const double err = sampled_relative_error(p, c.data());
        // Rounding the output once to the dtype, plus float32 accumulation.
        const double bound = dtype == DType::kFloat32 ? 1e-5 : dtype == DType::kFloat16 ? 2e-3 : 1e-2;
        const bool ok = err <= bound;
        failures += ok ? 0 : 1;
        std::printf("%-4s %-9s %-8s M=%ld N=%ld K=%ld group_size=%ld  max_rel_error=%.2e (bound %.0e)\n",
                    ok ? "ok" : "FAIL", backend_name(backend), dtype_name(dtype), long(m), long(n),
                    long(k), long(group_size), err, bound);
      }
    }
  }
  return failures;
}

}  // namespace int4mm::bench
