// Wire formats and the reference layout: exact round trips, bit for bit.
#include "test_util.h"

namespace int4mm::testing {
namespace {

std::vector<int32_t> random_q(int64_t n, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> q(size_t(n * k));
  for (auto& v : q) v = int32_t(rng() % 16);
  return q;
}

TEST(Formats, WireNibbleOrderIsHighNibbleEvenK) {
  // q[0][0] = 1, q[0][1] = 2 must give byte 0x12 (CONTRACT.md, form 2).
  std::vector<int32_t> q(32, 0);
  q[0] = 1, q[1] = 2, q[31] = 15;
  std::vector<uint8_t> wire(16);
  Options ref{Backend::kReference};
  convert_weight_to_int4pack(TensorView::contiguous(q.data(), DType::kInt32, {1, 32}),
                             TensorView::contiguous(wire.data(), DType::kUInt8, {1, 16}), 8, ref);
  EXPECT_EQ(wire[0], 0x12);
  EXPECT_EQ(wire[15], 0x0f);
}

class RoundTrip : public ::testing::TestWithParam<std::tuple<Backend, int64_t, int64_t>> {};

TEST_P(RoundTrip, BothFormsAreExact) {
  const auto [backend, n, k] = GetParam();
  const std::vector<int32_t> q = random_q(n, k, uint32_t(n * 131 + k));
  const Options options{backend};
  const PackedShape shape = packed_shape(backend, n, k);
  std::vector<uint8_t> packed(size_t(shape.rows * shape.cols), 0xAA);
  const auto packed_view =
      TensorView::contiguous(packed.data(), DType::kUInt8, {shape.rows, shape.cols});
  auto q_in = q;
  convert_weight_to_int4pack(TensorView::contiguous(q_in.data(), DType::kInt32, {n, k}),
                             packed_view, 4, options);

  std::vector<int32_t> back(q.size(), -1);
  unpack(packed_view, TensorView::contiguous(back.data(), DType::kInt32, {n, k}), options);
  EXPECT_EQ(back, q);

  // The uint8 wire form packs to the same bytes and unpacks to itself.
  std::vector<uint8_t> wire(size_t(n * k / 2));
  detail::int32_to_wire("test", q.data(), n, k, wire.data());
  std::vector<uint8_t> packed2(packed.size(), 0x55);
  const auto packed2_view =
      TensorView::contiguous(packed2.data(), DType::kUInt8, {shape.rows, shape.cols});
  convert_weight_to_int4pack(TensorView::contiguous(wire.data(), DType::kUInt8, {n, k / 2}),
                             packed2_view, 2, options);
  EXPECT_EQ(packed2, packed);
  std::vector<uint8_t> wire_back(wire.size(), 0);
  unpack(packed2_view, TensorView::contiguous(wire_back.data(), DType::kUInt8, {n, k / 2}),
         options);
  EXPECT_EQ(wire_back, wire);
}

INSTANTIATE_TEST_SUITE_P(HostBackends, RoundTrip,
                         ::testing::Combine(::testing::Values(Backend::kReference, Backend::kCpu),
                                            ::testing::Values(1, 7, 19, 48, 99),
                                            ::testing::Values(32, 64, 96, 4160)));

}  // namespace
}  // namespace int4mm::testing
