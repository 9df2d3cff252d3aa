// The CPU half of `int4mm bench` (tools/bench.h): times the CPU backend beside
// the ceilings and peers that make its numbers meaningful, in the same run.
//
//   int4mm bench --backend cpu --shapes 8192x28672 --m 1,8,256 --dtype bf16 --threads 2
//
// Per shape and M, records of:
//   "copy"         (once) the machine's read bandwidth: a vectorized integer sum
//                  (best of plain and software-prefetched) with the same thread count over a buffer as large as the
//                  largest rotated weight footprint of the run (64 MiB .. 1 GiB):
//                  the level of memory the weights are read from.
//   "cpu_<isa>"    our kernel: median time, GB/s of weights (N*K/2 + scales and
//                  zeros), % of the measured read bandwidth, max relative error
//                  vs float64 on sampled outputs, speedups over the reference
//                  backend and over dense SGEMM. Packed weights rotate over
//                  enough copies to exceed twice the LLC, so M = 1 streams DRAM
//                  (at most 3 GB and 256 copies: a tiny shape stays in cache);
//                  INT4MM_BENCH_COPIES=<n> forces n copies (1: a warm cache).
//   "dense_sgemm"  OpenBLAS cblas_sgemm, float32, on the dequantized weights
//                  (loaded at run time with dlopen: no link-time dependency; the
//                  record is absent when libopenblas.so.0 is not installed).
//   The reference backend is timed on the first 64 columns only and its time
//   scaled by N / 64 (it is a float64 scalar loop, linear in N): the speedup
//   over it is an extrapolation, labelled as such.
#include <dlfcn.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#include "bench.h"
#include "cpu/cpu_isa.h"

namespace int4mm::bench {
namespace {

using Clock = std::chrono::steady_clock;

double median_us(int repeats, const std::function<void(int)>& body) {
  std::vector<double> times;
  for (int i = 0; i < std::max(1, repeats); ++i) {
    const auto t0 = Clock::now();
    body(i);
    times.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  return times[times.size() / 2];
}

int thread_count(int threads) {
  return threads > 0 ? threads : std::max(1, int(sysconf(_SC_NPROCESSORS_ONLN)));
}

// Read bandwidth in GB/s: each thread sums its slice of a `bytes` buffer of
// uint64 (integer adds vectorize without -ffast-math; 8 per step), once as is
// and once with a software prefetch 2 KB ahead; the faster counts. One core
// keeps too few misses in flight for the hardware prefetchers alone to reach
// DRAM speed on this VM (plain ~8-10 GB/s per core, prefetched ~11), and a
// ceiling that our prefetching kernel could beat would flatter it.
double read_bandwidth_gbs(int threads, double bytes) {
  const size_t count = size_t(bytes) / sizeof(uint64_t) / 64 * 64;
  std::vector<uint64_t> buffer(count);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (size_t i = 0; i < count; ++i) buffer[i] = i * 2654435761u;
  volatile uint64_t sink = 0;
  double best_us = 1e300;
  for (const size_t ahead : {size_t(0), size_t(2048) / sizeof(uint64_t)}) {
    best_us = std::min(best_us, median_us(7, [&](int) {
      uint64_t total = 0;
      const uint64_t* b = buffer.data();
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : total)
      for (size_t i = 0; i < count; i += 8) {
        if (ahead != 0) __builtin_prefetch(b + i + ahead, 0, 3);
        total += b[i] + b[i + 1] + b[i + 2] + b[i + 3] + b[i + 4] + b[i + 5] + b[i + 6] + b[i + 7];
      }
      sink = sink + total;
    }));
  }
  return double(count * sizeof(uint64_t)) / best_us * 1e-3;
}

// cblas_sgemm from OpenBLAS, if present.
struct Sgemm {
  using Fn = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int,
                      float, float*, int);
  using SetThreads = void (*)(int);
  Fn fn = nullptr;
  SetThreads set_threads = nullptr;

  Sgemm() {
    void* lib = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) return;
    fn = reinterpret_cast<Fn>(dlsym(lib, "cblas_sgemm"));
    set_threads = reinterpret_cast<SetThreads>(dlsym(lib, "openblas_set_num_threads"));
  }
  // C [m, n] = A [m, k] @ W [n, k]^T, row major (CblasRowMajor = 101,
  // CblasNoTrans = 111, CblasTrans = 112).
  void operator()(const float* a, const float* w, float* c, int64_t m, int64_t n,
                  int64_t k) const {
    fn(101, 111, 112, int(m), int(n), int(k), 1.0f, a, int(k), w, int(k), 0.0f, c, int(n));
  }
};

TensorView view(const std::vector<uint8_t>& bytes, DType dtype, std::initializer_list<int64_t> shape) {
  return TensorView::contiguous(const_cast<uint8_t*>(bytes.data()), dtype, shape);
}

Record base_record(const HostProblem& p, int64_t m, const char* kernel, double bandwidth) {
  Record r;
  r.backend = "cpu";
  r.kernel = kernel;
  r.dtype = p.dtype;
  r.group_size = p.group_size;
  r.m = m, r.n = p.n, r.k = p.k;
  r.flops = 2.0 * double(m) * double(p.n) * double(p.k);
  r.bandwidth_gbs = bandwidth;
  return r;
}

// The reference backend's time for [m, k] x [n, k], from its first 64 columns.
double reference_us_extrapolated(const HostProblem& p, int64_t m) {
  const int64_t cols = std::min<int64_t>(p.n, 64), groups = p.k / p.group_size;
  const int64_t esize = dtype_size(p.dtype);
  std::vector<uint8_t> sz(size_t(groups * cols * 2 * esize));
  for (int64_t g = 0; g < groups; ++g) {
    std::memcpy(sz.data() + g * cols * 2 * esize, p.sz.data() + g * p.n * 2 * esize,
                size_t(cols * 2 * esize));
  }
  std::vector<uint8_t> c(size_t(m * cols * esize));
  const Options ref{Backend::kReference};
  const double us = median_us(1, [&](int) {
    weight_int4pack_mm(view(p.a, p.dtype, {m, p.k}), view(p.q, DType::kUInt8, {cols, p.k / 2}),
                       p.group_size, view(sz, p.dtype, {groups, cols, 2}),
                       view(c, p.dtype, {m, cols}), ref);
  });
  return us * double(p.n) / double(cols);
}

}  // namespace

std::vector<Record> run_cpu(const Config& config) {
  const int threads = thread_count(config.threads);
  Options options;
  options.backend = Backend::kCpu;
  options.threads = threads;
  const std::string kernel = std::string("cpu_") + detail::cpu::isa_name(detail::cpu::current_isa());

  long llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (llc <= 0) llc = 64l << 20;
  const char* forced_copies = std::getenv("INT4MM_BENCH_COPIES");
  // Copies of each packed weight, rotated so that M = 1 reads DRAM, not LLC.
  auto copies_for = [&](double packed_bytes) {
    if (forced_copies != nullptr && *forced_copies != '\0') {
      return std::max(1, std::atoi(forced_copies));
    }
    return int(std::clamp(2.0 * double(llc) / packed_bytes + 1.0, 1.0,
                          std::clamp(3e9 / packed_bytes, 1.0, 256.0)));
  };
  // The bandwidth buffer is sized like the largest rotated footprint: a tiny
  // shape (the CTest run) measures in seconds, not over 1 GiB.
  double footprint = 0;
  for (const Shape& shape : config.shapes) {
    const PackedShape ps = packed_shape(Backend::kCpu, shape.n, shape.k);
    const double bytes = double(ps.rows * ps.cols);
    footprint = std::max(footprint, bytes * copies_for(bytes));
  }
  const double bandwidth_bytes = std::clamp(footprint, double(64 << 20), double(1 << 30));

  std::vector<Record> records;
  const double bandwidth = read_bandwidth_gbs(threads, bandwidth_bytes);
  {
    Record copy;
    copy.backend = "cpu";
    copy.kernel = "copy";
    copy.dtype = config.dtype;
    copy.bandwidth_gbs = bandwidth;
    copy.bytes = bandwidth_bytes;
    copy.time_us = copy.bytes / bandwidth * 1e-3;
    copy.extra["pct_of_bandwidth"] = 100.0;
    records.push_back(copy);
  }
  const Sgemm sgemm;
  if (sgemm.set_threads != nullptr) sgemm.set_threads(threads);

  const int64_t max_m = config.ms.empty() ? 1 : *std::max_element(config.ms.begin(), config.ms.end());
  for (const Shape& shape : config.shapes) {
    const HostProblem p = make_problem(max_m, shape.n, shape.k, config.group_size, config.dtype);
    const int64_t groups = p.k / p.group_size;
    const PackedShape ps = packed_shape(Backend::kCpu, p.n, p.k);
    const double packed_bytes = double(ps.rows * ps.cols);
    const int copies = copies_for(packed_bytes);
    std::vector<std::vector<uint8_t>> packed{size_t(copies)};
    packed[0].resize(size_t(packed_bytes));
    convert_weight_to_int4pack(view(p.q, DType::kUInt8, {p.n, p.k / 2}),
                               view(packed[0], DType::kUInt8, {ps.rows, ps.cols}), 8, options);
    for (int i = 1; i < copies; ++i) packed[size_t(i)] = packed[0];

    // Dense float32 weights for SGEMM: W = dequantize(packed), A in float32.
    std::vector<float> w32, a32, c32;
    if (sgemm.fn != nullptr) {
      w32.resize(size_t(p.n * p.k));
      dequantize(view(packed[0], DType::kUInt8, {ps.rows, ps.cols}), p.group_size,
                 view(p.sz, p.dtype, {groups, p.n, 2}),
                 TensorView::contiguous(w32.data(), DType::kFloat32, {p.n, p.k}), options);
      a32.resize(size_t(max_m * p.k));
      for (int64_t i = 0; i < max_m * p.k; ++i) a32[size_t(i)] = float(i % 97) * 0.01f - 0.5f;
      c32.resize(size_t(max_m * p.n));
    }

    const double esize = double(dtype_size(p.dtype));
    for (int64_t m : config.ms) {
      std::vector<uint8_t> c(size_t(m * p.n) * size_t(esize));
      auto run = [&](int i) {
        weight_int4pack_mm(view(p.a, p.dtype, {m, p.k}),
                           view(packed[size_t(i % copies)], DType::kUInt8, {ps.rows, ps.cols}),
                           p.group_size, view(p.sz, p.dtype, {groups, p.n, 2}),
                           view(c, p.dtype, {m, p.n}), options);
      };
      run(0);
      Record r = base_record(p, m, kernel.c_str(), bandwidth);
      HostProblem rows = p;
      rows.m = m;
      r.max_rel_error = sampled_relative_error(rows, c.data());
      for (int i = 1; i < copies; ++i) run(i);  // warm every copy's pages
      r.time_us = median_us(config.repeats, run);
      r.weight_bytes = packed_bytes + double(p.sz.size());
      r.bytes = r.weight_bytes + double(m * p.k + m * p.n) * esize;
      const double gbs = r.weight_bytes / r.time_us * 1e-3;
      r.extra["pct_of_bandwidth"] = 100.0 * gbs / bandwidth;
      r.extra["copies"] = copies;
      // The reference costs M*N*K float64 scalar steps: sample it while cheap.
      if (double(m) * double(p.k) * 64.0 <= 2e8) {
        r.extra["speedup_vs_ref_extrapolated"] = reference_us_extrapolated(rows, m) / r.time_us;
      }

      if (sgemm.fn != nullptr) {
        Record d = base_record(p, m, "dense_sgemm", bandwidth);
        sgemm(a32.data(), w32.data(), c32.data(), m, p.n, p.k);
        d.time_us = median_us(config.repeats, [&](int) {
          sgemm(a32.data(), w32.data(), c32.data(), m, p.n, p.k);
        });
        d.bytes = double(p.n * p.k + m * p.k + m * p.n) * 4.0;
        d.weight_bytes = double(p.n * p.k) * 4.0;  // its own float32 weights
        const double dense_gbs = d.weight_bytes / d.time_us * 1e-3;
        d.extra["pct_of_bandwidth"] = 100.0 * dense_gbs / bandwidth;
        r.extra["speedup_vs_dense"] = d.time_us / r.time_us;
        records.push_back(r);
        records.push_back(d);
      } else {
        records.push_back(r);
      }
    }
  }
  return records;
}

int selftest_cpu() {
  int failures = 0;
  for (Backend backend : {Backend::kReference, Backend::kCpu}) {
    for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
      for (int64_t group_size : {32, 128}) {
        // Odd M and N (a tail tile), M above 8 (the row-blocked path), K of
        // several groups.
        for (int64_t m : {3, 17}) {
          const int64_t n = 19, k = 4 * group_size;
          HostProblem p = make_problem(m, n, k, group_size, dtype, 7);
          Options options;
          options.backend = backend;
          const PackedShape shape = packed_shape(backend, n, k);
          std::vector<uint8_t> packed(size_t(shape.rows * shape.cols));
          convert_weight_to_int4pack(view(p.q, DType::kUInt8, {n, k / 2}),
                                     view(packed, DType::kUInt8, {shape.rows, shape.cols}), 8,
                                     options);
          std::vector<uint8_t> c(size_t(m * n * dtype_size(dtype)));
          weight_int4pack_mm(view(p.a, dtype, {m, k}),
                             view(packed, DType::kUInt8, {shape.rows, shape.cols}), group_size,
                             view(p.sz, dtype, {k / group_size, n, 2}), view(c, dtype, {m, n}),
                             options);
          const double err = sampled_relative_error(p, c.data());
          // Rounding the output once to the dtype, plus float32 accumulation.
          const double bound =
              dtype == DType::kFloat32 ? 1e-5 : dtype == DType::kFloat16 ? 2e-3 : 1e-2;
          const bool ok = err <= bound;
          failures += ok ? 0 : 1;
          std::printf(
              "%-4s %-9s %-11s %-8s M=%ld N=%ld K=%ld group_size=%ld  max_rel_error=%.2e (bound "
              "%.0e)\n",
              ok ? "ok" : "FAIL", backend_name(backend),
              backend == Backend::kCpu ? detail::cpu::isa_name(detail::cpu::current_isa()) : "-",
              dtype_name(dtype), long(m), long(n), long(k), long(group_size), err, bound);
        }
      }
    }
  }
  return failures;
}

}  // namespace int4mm::bench
