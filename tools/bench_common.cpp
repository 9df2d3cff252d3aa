// The backend-independent half of the benchmark harness (tools/bench.h):
// random problems and the sampled float64 check every backend's records use.
//
// make_problem must stay fast on the largest shapes we bench (8192 x 28672 is
// 235M weights): W is drawn and quantized in blocks of rows, in parallel, and
// never held whole in memory. Each block has its own random stream, seeded from
// (seed, block), so the problem does not depend on the number of threads.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <thread>
#include <vector>

#include "bench.h"
#include "core/float16.h"
#include "core/wire.h"

namespace int4mm::bench {
namespace {

using detail::load_float;
using detail::store_float;

// splitmix64: a tiny, fast generator with a defined output on every platform
// (std::normal_distribution is not specified bit for bit across libraries).
struct Random {
  uint64_t state;

  explicit Random(uint64_t seed) : state(seed) {}

  uint64_t next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

  // Uniform in (0, 1]: never 0, so log() below is finite.
  double uniform() { return (double(next() >> 11) + 1.0) * 0x1.0p-53; }

  // Two N(0, 1) draws per Box-Muller step; the second is cached.
  double normal() {
    if (has_spare) {
      has_spare = false;
      return spare;
    }
    const double r = std::sqrt(-2.0 * std::log(uniform()));
    const double t = 6.283185307179586 * uniform();
    spare = r * std::sin(t);
    has_spare = true;
    return r * std::cos(t);
  }

  double spare = 0;
  bool has_spare = false;
};

uint64_t stream_seed(uint32_t seed, uint64_t stream) {
  return (uint64_t(seed) << 32) ^ (stream * 0xd1b54a32d192ed03ull) ^ 0x5851f42d4c957f2dull;
}

// Runs body(block) for block in [0, blocks) on up to hardware_concurrency threads.
template <typename Body>
void parallel_blocks(int64_t blocks, Body body) {
  const int64_t workers =
      std::max<int64_t>(1, std::min<int64_t>(blocks, std::thread::hardware_concurrency()));
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(workers));
  for (int64_t t = 0; t < workers; ++t) {
    threads.emplace_back([&, t] {
      try {
        for (int64_t b = t; b < blocks; b += workers) body(b);
      } catch (...) {
        errors[size_t(t)] = std::current_exception();
      }
    });
  }
  for (auto& th : threads) th.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

}  // namespace

HostProblem make_problem(int64_t m, int64_t n, int64_t k, int64_t group_size, DType dtype,
                         uint32_t seed) {
  HostProblem p;
  p.m = m, p.n = n, p.k = k, p.group_size = group_size, p.dtype = dtype;
  const int64_t esize = dtype_size(dtype);
  const int64_t groups = group_size > 0 ? k / group_size : 0;

  p.a.resize(size_t(m * k * esize));
  Random a_rng(stream_seed(seed, 0));
  for (int64_t i = 0; i < m * k; ++i) store_float(p.a.data(), dtype, i, float(a_rng.normal()));

  p.q.resize(size_t(n * (k / 2)));
  p.sz.resize(size_t(groups * n * 2 * esize));

  // Rows per block: ~1M weights, enough to amortize a thread's start, small
  // enough that every core gets several blocks.
  const int64_t rows_per_block = std::max<int64_t>(1, (int64_t(1) << 20) / std::max<int64_t>(k, 1));
  const int64_t blocks = (n + rows_per_block - 1) / rows_per_block;
  parallel_blocks(blocks, [&](int64_t block) {
    const int64_t row0 = block * rows_per_block;
    const int64_t rows = std::min(rows_per_block, n - row0);
    std::vector<uint8_t> w(size_t(rows * k * esize));   // [rows, k] in dtype
    std::vector<uint8_t> sz(size_t(groups * rows * 2 * esize));  // [groups, rows, 2]
    Random rng(stream_seed(seed, uint64_t(block) + 1));
    for (int64_t i = 0; i < rows * k; ++i) store_float(w.data(), dtype, i, float(0.02 * rng.normal()));
    // q rows are contiguous in the wire format: quantize straight into place.
    // scales_and_zeros is [groups, n, 2], so this block's rows are strided
    // there: quantize into a block-sized copy and scatter it.
    group_quantize(TensorView::contiguous(w.data(), dtype, {rows, k}), group_size,
                   TensorView::contiguous(p.q.data() + row0 * (k / 2), DType::kUInt8, {rows, k / 2}),
                   TensorView::contiguous(sz.data(), dtype, {groups, rows, 2}));
    for (int64_t g = 0; g < groups; ++g) {
      std::memcpy(p.sz.data() + (g * n + row0) * 2 * esize, sz.data() + g * rows * 2 * esize,
                  size_t(rows * 2 * esize));
    }
  });
  return p;
}

double sampled_relative_error(const HostProblem& p, const void* c) {
  const int64_t rows = std::min<int64_t>(p.m, 8);
  const int64_t cols = std::min<int64_t>(p.n, 64);
  if (rows == 0 || cols == 0) return 0;
  const int64_t half_k = p.k / 2;
  std::vector<double> a(size_t(rows * p.k));
  for (int64_t i = 0; i < rows * p.k; ++i) a[size_t(i)] = load_float(p.a.data(), p.dtype, i);

  double max_err = 0, max_ref = 0;
  std::vector<double> w(size_t(p.k));
  for (int64_t s = 0; s < cols; ++s) {
    // Spread the sample over all of N, first and last column included, so a
    // kernel that mishandles a tail or a tile boundary is seen.
    const int64_t j = cols == 1 ? 0 : s * (p.n - 1) / (cols - 1);
    const uint8_t* q_row = p.q.data() + j * half_k;
    for (int64_t l = 0; l < p.k; ++l) {
      const int64_t g = l / p.group_size;
      const double scale = load_float(p.sz.data(), p.dtype, (g * p.n + j) * 2);
      const double zero = load_float(p.sz.data(), p.dtype, (g * p.n + j) * 2 + 1);
      w[size_t(l)] = (detail::wire_nibble(q_row, l) - 8) * scale + zero;
    }
    for (int64_t i = 0; i < rows; ++i) {
      double ref = 0;
      for (int64_t l = 0; l < p.k; ++l) ref += a[size_t(i * p.k + l)] * w[size_t(l)];
      const double got = load_float(c, p.dtype, i * p.n + j);
      // A NaN anywhere must not hide behind max(): report it as infinite error.
      const double err = std::isfinite(got) ? std::fabs(got - ref) : INFINITY;
      max_err = std::max(max_err, err);
      max_ref = std::max(max_ref, std::fabs(ref));
    }
  }
  return max_ref > 0 ? max_err / max_ref : max_err;
}

}  // namespace int4mm::bench
