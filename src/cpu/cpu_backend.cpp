// The CPU backend: packing, ISA dispatch, threading and the matmul driver.
//
// Layout and algebra: cpu_kernels.h. Kernels: kernels_{scalar,avx2,avx512,
// avx512_bf16}.cpp, one translation unit per ISA, each compiled with its own
// -m flags (CMakeLists.txt) and called only when CPUID (cpu_isa.h) has them.
//
// Work split (mm):
//   1. A is converted once to float32 rows (kept as bfloat16 for the BF16
//      kernel) and sum(a) per row and group is computed once: shared by all
//      columns and threads.
//   2. The tiles of 16 columns are cut into one contiguous range per thread
//      (OpenMP, whose worker threads persist between calls). Each thread
//      streams its tiles' weights sequentially, once per row block.
//   3. Small M (<= 8): one pass; every unpacked weight vector is used by all
//      rows while it is in registers. Large M: k is cut into blocks of
//      kKBlock; for each block, each tile's slice (kKBlock / 2 * 16 bytes = 8 KB,
//      L1-resident) is reused by every block of 8 rows, and the A block
//      (M x kKBlock floats) stays in L2 across tiles. Results accumulate in a
//      float32 scratch C, rounded once to the output dtype at the end.
//   The large-M path is the same register-blocked kernel, not a BLAS call on
//   dequantized tiles: measured in docs/cpu.md.
//
// Limitations:
//   1. Tail tiles (n % 16 columns) run the portable kernel on every ISA.
//   2. Scratch (float32 A, sum(a), float32 C) is allocated per call.
#include <omp.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <atomic>
#include <cstring>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "core/backend.h"
#include "core/check.h"
#include "core/float16.h"
#include "core/wire.h"
#include "cpu/cpu_isa.h"
#include "cpu/cpu_kernels.h"

namespace int4mm::detail::cpu {

// ---------------------------------------------------------------------------
// ISA selection
// ---------------------------------------------------------------------------

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx512Bf16: return "avx512_bf16";
    case Isa::kAmx: return "amx";
  }
  return "?";
}

Isa parse_isa(const std::string& name) {
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAvx512Bf16, Isa::kAmx}) {
    if (name == isa_name(isa)) return isa;
  }
  fail("cpu", "INT4MM_CPU_ISA must be scalar, avx2, avx512, avx512_bf16 or amx, got '", name,
       "'");
}

#if defined(__x86_64__)
namespace {
// AMX-TILE and AMX-BF16 in CPUID (leaf 7, EDX bits 24 and 22), and Linux's
// permission to use the tile data state (XFEATURE_XTILEDATA = 18), which a
// process must request once (ARCH_REQ_XCOMP_PERM = 0x1023) before any tile
// instruction, or the first one faults.
bool amx_usable() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return false;
  if ((edx & (1u << 24)) == 0 || (edx & (1u << 22)) == 0) return false;
  return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
}
}  // namespace
#endif

Isa detected_isa() {
  static const Isa isa = [] {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    // __builtin_cpu_supports also checks that the OS saves the wide registers.
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                      __builtin_cpu_supports("f16c");
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                        __builtin_cpu_supports("avx512dq");
    if (avx512 && __builtin_cpu_supports("avx512bf16")) {
      return amx_usable() ? Isa::kAmx : Isa::kAvx512Bf16;
    }
    if (avx512) return Isa::kAvx512;
    if (avx2) return Isa::kAvx2;
#endif
    return Isa::kScalar;
  }();
  return isa;
}

namespace {

Isa checked(Isa isa, const char* source) {
  if (int(isa) > int(detected_isa())) {
    fail("cpu", source, " asks for ISA ", isa_name(isa), " but this CPU supports at most ",
         isa_name(detected_isa()));
  }
  return isa;
}

// -1: no override.
std::atomic<int> g_override{-1};

Isa environment_isa() {
  static const Isa isa = [] {
    const char* env = std::getenv("INT4MM_CPU_ISA");
    if (env == nullptr || *env == '\0') return detected_isa();
    return checked(parse_isa(env), "INT4MM_CPU_ISA");
  }();
  return isa;
}

}  // namespace

Isa current_isa() {
  const int forced = g_override.load(std::memory_order_relaxed);
  return forced >= 0 ? Isa(forced) : environment_isa();
}

void set_isa_override(Isa isa) { g_override = int(checked(isa, "set_isa_override")); }
void clear_isa_override() { g_override = -1; }

// ---------------------------------------------------------------------------
// Packing
// ---------------------------------------------------------------------------

namespace {

int64_t tile_count(int64_t n) { return (n + kTile - 1) / kTile; }
int tile_width(int64_t t, int64_t n) { return int(std::min<int64_t>(kTile, n - t * kTile)); }

// The byte of the packed stream that holds q[col][k] (and q[col][k ^ 1]).
int64_t packed_byte(int64_t col, int64_t k, int64_t n, int64_t kk) {
  const int64_t t = col / kTile;
  const int width = tile_width(t, n);
  return tile_offset(t, kk) + (k / 8) * 4 * width + ((k % 8) / 2) * width + col % kTile;
}

int resolve_threads(const Options& options) {
  if (options.threads > 0) return options.threads;
  static const int cores = std::max(1, int(std::thread::hardware_concurrency()));
  return cores;
}

}  // namespace

PackedShape packed_shape(int64_t n, int64_t k) { return {n, k / 2}; }

void pack(const uint8_t* wire, int64_t n, int64_t k, uint8_t* packed, const Options&) {
  for (int64_t col = 0; col < n; ++col) {
    const uint8_t* row = wire + col * (k / 2);
    for (int64_t l = 0; l < k; l += 2) {
      packed[packed_byte(col, l, n, k)] =
          uint8_t(wire_nibble(row, l) | (wire_nibble(row, l + 1) << 4));
    }
  }
}

void unpack(const uint8_t* packed, int64_t n, int64_t k, uint8_t* wire, const Options&) {
  for (int64_t col = 0; col < n; ++col) {
    for (int64_t l = 0; l < k; l += 2) {
      const uint8_t byte = packed[packed_byte(col, l, n, k)];
      wire[col * (k / 2) + l / 2] = uint8_t((byte & 15) << 4 | byte >> 4);
    }
  }
}

// ---------------------------------------------------------------------------
// Matmul
// ---------------------------------------------------------------------------

namespace {

using TileKernel = void (*)(const TileArgs&);

// k per block on the large-M path: 1024 floats of each A row (M = 256: 1 MB,
// in L2) and 8 KB of each tile (in L1). A multiple of every group size.
constexpr int64_t kKBlock = 1024;

// The kernel for full tiles. With AMX: AMX's TDPBF16PS for every M (blocks
// of 8 rows; large M through the k-blocked driver); two column tiles per call
// made it the fastest at M = 1 too (bf16 5.7-5.8 vs 6.2-6.4 ms VDPBF16PS,
// fp16 5.8 vs 6.2-6.5 ms FMA, fp32 tied), and from M = 2 on the FMA kernel is
// bound by arithmetic and VDPBF16PS slower still. Without AMX: M = 1
// VDPBF16PS for bfloat16 activations (read as they are), else the float FMA
// kernel. Measured in docs/cpu.md.
TileKernel full_tile_kernel(Isa isa, DType dtype, int64_t m, int64_t group_size) {
  const bool bf16 = dtype == DType::kBFloat16;
  switch (isa) {
    case Isa::kAmx:
      // float32 rows are split into 3 bfloat16 rows (below): two tile
      // sub-blocks per 8 rows; with two column tiles per call still faster
      // than the FMA kernel at large M (M = 256: 340 vs 436 ms).
      if (group_size % 32 == 0 && group_size <= 256) {
        return amx::mm_tile;
      }
      [[fallthrough]];
    case Isa::kAvx512Bf16: return bf16 && m == 1 ? avx512_bf16::mm_tile : avx512::mm_tile;
    case Isa::kAvx512: return avx512::mm_tile;
    case Isa::kAvx2: return avx2::mm_tile;
    case Isa::kScalar: break;
  }
  return scalar::mm_tile;
}

}  // namespace

void mm(const MmArgs& args) {
  const int64_t m = args.m, n = args.n, k = args.k, group_size = args.group_size;
  const int64_t groups = k / group_size;
  const Isa isa = current_isa();
  const TileKernel full_kernel = full_tile_kernel(isa, args.dtype, m, group_size);
  const bool amx_kernel = full_kernel == amx::mm_tile;
  const bool bf16_kernel = full_kernel == avx512_bf16::mm_tile || amx_kernel;
  // The AMX kernel multiplies bfloat16 only. float16 and float32 rows of A are
  // split EXACTLY into 2 or 3 bfloat16 rows, a = hi + mid + lo (each the top 8
  // significant bits of what is left; float16 has 11, float32 24), so that every
  // product stays exact and the sum is accumulated in float32 as before.
  const int split = !amx_kernel || args.dtype == DType::kBFloat16 ? 1
                    : args.dtype == DType::kFloat16                ? 2
                                                                   : 3;
  // Rows kSplitPad elements apart, not k: at k = 8192 a 16 KB stride puts
  // all 16 rows of an A tile in one L1 set (12 ways).
  constexpr int64_t kSplitPad = 32;
  const int64_t ld_split = k + kSplitPad;
  std::vector<uint16_t> a_split(split > 1 ? size_t(m * split * ld_split) : 0);  // [m][split][ld_split]

  const int64_t tiles = tile_count(n);
  const int64_t ldc32 = tiles * kTile;
  const int threads = int(std::min<int64_t>(resolve_threads(*args.options), tiles));

  // A as float32 [m][k] (unless the BF16 kernel reads it as is) and sum(a)
  // per row and group, in double so that it adds no error of its own.
  std::vector<float> a32(bf16_kernel ? 0 : size_t(m * k));
  std::vector<float> sum_a(size_t(m * groups));
  std::vector<float> a_tail;  // float32 rows for the tail tile under the BF16 kernel
  const bool need_tail_floats = bf16_kernel && n % kTile != 0;
  if (need_tail_floats) a_tail.resize(size_t(m * k));
  float* a_floats = bf16_kernel ? a_tail.data() : a32.data();
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      double sum = 0;
      for (int64_t l = g * group_size; l < (g + 1) * group_size; ++l) {
        const float v = load_float(args.a, args.dtype, r * args.lda + l);
        if (a_floats != nullptr && (!bf16_kernel || need_tail_floats)) a_floats[r * k + l] = v;
        sum += v;
        float rest = v;
        for (int h = 0; h < split && split > 1; ++h) {
          uint32_t bits;
          std::memcpy(&bits, &rest, sizeof bits);
          const uint32_t top = bits & 0xFFFF0000u;  // truncation: rest - top is exact
          float top_value;
          std::memcpy(&top_value, &top, sizeof top);
          a_split[size_t((r * split + h) * ld_split + l)] = uint16_t(top >> 16);
          rest -= top_value;
        }
      }
      sum_a[r * groups + g] = float(sum);
    }
  }

  std::vector<float> c32(size_t(m * ldc32));
  const bool one_pass = m <= kMaxRows;
  const int64_t k_block = one_pass ? k : std::min(k, kKBlock);

#pragma omp parallel num_threads(threads)
  {
    const int id = omp_get_thread_num();
    const int count = omp_get_num_threads();
    const int64_t t_begin = tiles * id / count, t_end = tiles * (id + 1) / count;
    for (int64_t k0 = 0; k0 < k; k0 += k_block) {
      const int64_t k1 = std::min(k, k0 + k_block);
      for (int64_t t = t_begin; t < t_end; ++t) {
        const int width = tile_width(t, n);
        const bool full = width == kTile;
        TileArgs ta{};
        // AMX: two adjacent full tiles per call, so that each A tile loaded
        // feeds both (A is re-read from L2 once per call: docs/cpu.md, v8).
        ta.tiles = amx_kernel && full && t + 1 < t_end && tile_width(t + 1, n) == kTile ? 2 : 1;
        ta.w_tile_stride = tile_offset(1, k);
        ta.w = args.packed + tile_offset(t, k) + k0 / 8 * 4 * width;
        ta.width = width;
        const bool raw_a = full && bf16_kernel && split == 1;
        const bool split_a = full && split > 1;
        ta.a = raw_a ? args.a : static_cast<const void*>(a_floats);
        ta.lda = raw_a ? args.lda : split_a ? ld_split : k;
        ta.split = split_a ? split : 1;
        ta.ld_sum = groups;
        ta.sz = static_cast<const uint8_t*>(args.sz) + t * kTile * 2 * dtype_size(args.dtype);
        ta.n = n;
        ta.sz_dtype = args.dtype;
        ta.ldc = ldc32;
        ta.k0 = k0;
        ta.k1 = k1;
        ta.group_size = group_size;
        ta.accumulate = k0 > 0;
        for (int64_t r0 = 0; r0 < m; r0 += kMaxRows) {
          ta.rows = int(std::min<int64_t>(kMaxRows, m - r0));
          const int64_t a_row = raw_a ? r0 * args.lda : r0 * k;
          if (raw_a) {
            ta.a = static_cast<const uint16_t*>(args.a) + a_row;
          } else if (split_a) {
            ta.a = a_split.data() + r0 * split * ld_split;
          } else {
            ta.a = a_floats + a_row;
          }
          ta.sum_a = sum_a.data() + r0 * groups;
          ta.c = c32.data() + r0 * ldc32 + t * kTile;
          (full ? full_kernel : scalar::mm_tile)(ta);
        }
        t += ta.tiles - 1;
      }
    }
    // Round this thread's columns once to the output dtype.
    const int64_t c_begin = t_begin * kTile, c_end = std::min(n, t_end * kTile);
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t col = c_begin; col < c_end; ++col) {
        store_float(args.c, args.dtype, r * args.ldc + col, c32[r * ldc32 + col]);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Dequantize: w[n][k] = (q - 8) * scale + zero, in double, rounded once (as
// the reference does, so that both agree bit for bit).
// ---------------------------------------------------------------------------

void dequantize(const DequantArgs& args) {
  const int64_t n = args.n, k = args.k;
  const int threads = int(std::min<int64_t>(resolve_threads(*args.options), n));
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t col = 0; col < n; ++col) {
    for (int64_t l = 0; l < k; ++l) {
      const uint8_t byte = args.packed[packed_byte(col, l, n, k)];
      const int q = (l & 1) ? byte >> 4 : byte & 15;
      const int64_t g = l / args.group_size;
      const double scale = load_float(args.sz, args.sz_dtype, (g * n + col) * 2);
      const double zero = load_float(args.sz, args.sz_dtype, (g * n + col) * 2 + 1);
      store_float(args.w, args.w_dtype, col * args.ldw + l, float((q - 8) * scale + zero));
    }
  }
}

}  // namespace int4mm::detail::cpu
