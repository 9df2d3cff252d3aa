// The CUDA half of the benchmark harness when int4mm is built without CUDA
// (or before tools/bench_cuda.cu exists): `int4mm bench --backend cuda` fails
// with a clear message, and selftest has nothing to check.
#include "bench.h"

namespace int4mm::bench {

std::vector<Record> run_cuda(const Config&) {
  throw Error("bench: int4mm was built without CUDA");
}

int selftest_cuda() { return 0; }

}  // namespace int4mm::bench
