// The CUDA packed layout, checked on the host (no GPU needed, so CI runs it):
// every packed word must hold exactly the mma.sync.m16n8k16 A fragment that
// gemv_mma / gemm_mma feed to the tensor cores, as PTX documents it.
#include <cstring>
#include <random>

#include "cuda/cuda_internal.h"
#include "cuda/layout.h"
#include "test_util.h"

namespace int4mm::testing {
namespace {

namespace L = cuda_layout;

// PTX ISA, "Matrix Fragments for mma.m16n8k16" (.f16/.bf16 A, row-major):
// element e of lane (g = lane / 4, t = lane % 4) is at
//   row = g + 8 * ((e / 2) % 2),  col = 2 t + (e % 2) + 8 * (e / 4).
std::pair<int, int> ptx_a_element(int lane, int e) {
  const int g = lane / 4, t = lane % 4;
  return {g + 8 * ((e / 2) % 2), 2 * t + (e % 2) + 8 * (e / 4)};
}

TEST(CudaLayout, WordsAreMmaAFragments) {
  const int64_t n = 37, k = 192;  // a partial tile and three steps
  std::mt19937 rng(5);
  std::vector<uint8_t> wire(size_t(n * k / 2));
  for (auto& b : wire) b = uint8_t(rng());
  const PackedShape shape = detail::cuda::packed_shape(n, k);
  std::vector<uint8_t> packed(size_t(shape.rows * shape.cols));
  detail::cuda::pack_host(wire.data(), n, k, packed.data());

  const int64_t steps = L::padded_k(k) / L::kStepK;
  for (int64_t tile = 0; tile < L::padded_n(n) / L::kTileN; ++tile) {
    for (int64_t step = 0; step < steps; ++step) {
      for (int lane = 0; lane < 32; ++lane) {
        for (int word = 0; word < L::kWordsPerLane; ++word) {
          uint32_t x;
          std::memcpy(&x, packed.data() + L::word_offset(tile, step, steps, lane, word), 4);
          for (int reg = 0; reg < 4; ++reg) {
            // The kernels read register `reg` as (x >> 4 reg) & 0x000f000f.
            const uint32_t pair = (x >> (4 * reg)) & 0x000f000fu;
            for (int half = 0; half < 2; ++half) {
              const auto [row, col] = ptx_a_element(lane, 2 * reg + half);
              const int64_t r = tile * 16 + row, c = step * 64 + word * 16 + col;
              const int want = r < n && c < k ? detail::wire_nibble(wire.data() + r * (k / 2), c) : 0;
              ASSERT_EQ(int(half ? pair >> 16 : pair & 0xf), want)
                  << "tile " << tile << " step " << step << " lane " << lane << " word " << word
                  << " register " << reg << " half " << half;
            }
          }
        }
      }
    }
  }
}

TEST(CudaLayout, LocationInvertsSource) {
  for (int lane = 0; lane < 32; ++lane) {
    for (int word = 0; word < L::kWordsPerLane; ++word) {
      for (int nibble = 0; nibble < 8; ++nibble) {
        const L::NibbleSource src = L::nibble_source(lane, word, nibble);
        const L::NibbleLocation loc = L::nibble_location(src.row, src.k);
        EXPECT_EQ(loc.lane, lane);
        EXPECT_EQ(loc.word, word);
        EXPECT_EQ(loc.nibble, nibble);
      }
    }
  }
}

TEST(CudaLayout, PackedShapePadsToTiles) {
  EXPECT_EQ(detail::cuda::packed_shape(37, 192).rows, 48);
  EXPECT_EQ(detail::cuda::packed_shape(37, 192).cols, 96);
  EXPECT_EQ(detail::cuda::packed_shape(16, 32).cols, 32);  // K padded to 64
}

}  // namespace
}  // namespace int4mm::testing
