// Every validation error, with its message.
#include "test_util.h"

namespace int4mm::testing {
namespace {

struct Fixture {
  Problem p = make_problem(2, 8, 64, 32, DType::kFloat16);
  HostArray c{DType::kFloat16, 16};
  Options ref{Backend::kReference};

  TensorView c_view() { return TensorView::contiguous(c.data(), DType::kFloat16, {2, 8}); }
  void mm(TensorView a, TensorView packed, int64_t g, TensorView sz, TensorView out) {
    weight_int4pack_mm(a, packed, g, sz, out, ref);
  }
};

TEST(Errors, MatmulScalesAndZerosShape) {
  Fixture f;
  HostArray bad(DType::kFloat16, 1 * 8 * 2);
  expect_error([&] { f.mm(f.p.a_view(), f.p.q_view(), 32, TensorView::contiguous(bad.data(), DType::kFloat16, {1, 8, 2}), f.c_view()); },
               "weight_int4pack_mm: scales_and_zeros must be [K/group_size=2, N=8, 2], got [1, 8, 2]");
}

TEST(Errors, MatmulGroupSize) {
  Fixture f;
  expect_error([&] { f.mm(f.p.a_view(), f.p.q_view(), 48, f.p.sz_view(), f.c_view()); },
               "weight_int4pack_mm: group_size must be 32, 64, 128 or 256, got 48");
}

TEST(Errors, MatmulKNotMultipleOfGroup) {
  Fixture f;
  expect_error([&] { f.mm(f.p.a_view(), f.p.q_view(), 128, f.p.sz_view(), f.c_view()); },
               "weight_int4pack_mm: K (A.shape[1]) must be a positive multiple of group_size=128, got 64");
}

TEST(Errors, MatmulDtypes) {
  Fixture f;
  HostArray c32(DType::kFloat32, 16);
  expect_error([&] { f.mm(f.p.a_view(), f.p.q_view(), 32, f.p.sz_view(), TensorView::contiguous(c32.data(), DType::kFloat32, {2, 8})); },
               "weight_int4pack_mm: C must be float16, got float32");
  auto a_int = f.p.a_view();
  a_int.dtype = DType::kInt32;
  expect_error([&] { f.mm(a_int, f.p.q_view(), 32, f.p.sz_view(), f.c_view()); },
               "weight_int4pack_mm: A must be float32, float16 or bfloat16, got int32");
  auto sz = f.p.sz_view();
  sz.dtype = DType::kBFloat16;
  expect_error([&] { f.mm(f.p.a_view(), f.p.q_view(), 32, sz, f.c_view()); },
               "weight_int4pack_mm: scales_and_zeros must be float16, got bfloat16");
}

TEST(Errors, MatmulShapes) {
  Fixture f;
  HostArray c3(DType::kFloat16, 24);
  expect_error([&] { f.mm(f.p.a_view(), f.p.q_view(), 32, f.p.sz_view(), TensorView::contiguous(c3.data(), DType::kFloat16, {3, 8})); },
               "weight_int4pack_mm: C must have M=2 rows (A.shape[0]), got [3, 8]");
  std::vector<uint8_t> packed(8 * 16);
  expect_error([&] { f.mm(f.p.a_view(), TensorView::contiguous(packed.data(), DType::kUInt8, {8, 16}), 32, f.p.sz_view(), f.c_view()); },
               "weight_int4pack_mm: packed must be [8, 32] (the reference layout of N=8, K=64), got [8, 16]");
  auto a3 = f.p.a_view();
  a3.ndim = 3;
  a3.shape[2] = 1;
  expect_error([&] { f.mm(a3, f.p.q_view(), 32, f.p.sz_view(), f.c_view()); },
               "weight_int4pack_mm: A must have 2 dimensions, got 3");
  auto a_t = f.p.a_view();
  a_t.strides[1] = 2;
  expect_error([&] { f.mm(a_t, f.p.q_view(), 32, f.p.sz_view(), f.c_view()); },
               "weight_int4pack_mm: A must have a contiguous last dimension (stride 1), got stride 2");
}

TEST(Errors, MatmulNullData) {
  Fixture f;
  auto a = f.p.a_view();
  a.data = nullptr;
  expect_error([&] { f.mm(a, f.p.q_view(), 32, f.p.sz_view(), f.c_view()); },
               "weight_int4pack_mm: A has a null data pointer");
}

TEST(Errors, MatmulDeviceMismatch) {
  Fixture f;
  auto c = f.c_view();
  c.device = Device::cuda(0);
  expect_error([&] { f.mm(f.p.a_view(), f.p.q_view(), 32, f.p.sz_view(), c); },
               "weight_int4pack_mm: C must be on cpu, got cuda:0");
  auto a = f.p.a_view();
  a.device = Device::cuda(0);
  expect_error([&] { f.mm(a, f.p.q_view(), 32, f.p.sz_view(), f.c_view()); },
               "weight_int4pack_mm: backend reference needs tensors on the cpu, got cuda:0");
}

TEST(Errors, PackValuesOutOfRange) {
  std::vector<int32_t> q(2 * 32, 3);
  q[32 + 5] = 16;
  std::vector<uint8_t> packed(32);
  expect_error([&] { convert_weight_to_int4pack(TensorView::contiguous(q.data(), DType::kInt32, {2, 32}), TensorView::contiguous(packed.data(), DType::kUInt8, {2, 16}), 8, Options{Backend::kReference}); },
               "convert_weight_to_int4pack: q values must be in 0..15, got 16 at q[1][5]");
  q[32 + 5] = -1;
  expect_error([&] { convert_weight_to_int4pack(TensorView::contiguous(q.data(), DType::kInt32, {2, 32}), TensorView::contiguous(packed.data(), DType::kUInt8, {2, 16}), 8, Options{Backend::kCpu}); },
               "got -1 at q[1][5]");
}

TEST(Errors, PackArguments) {
  std::vector<int32_t> q(2 * 48, 3);
  std::vector<uint8_t> packed(48);
  expect_error([&] { convert_weight_to_int4pack(TensorView::contiguous(q.data(), DType::kInt32, {2, 48}), TensorView::contiguous(packed.data(), DType::kUInt8, {2, 24}), 8, Options{Backend::kReference}); },
               "convert_weight_to_int4pack: K must be a positive multiple of 32 (the smallest group size), got 48 (q.shape[1])");
  expect_error([&] { convert_weight_to_int4pack(TensorView::contiguous(q.data(), DType::kInt32, {3, 32}), TensorView::contiguous(packed.data(), DType::kUInt8, {3, 16}), 3, Options{Backend::kReference}); },
               "convert_weight_to_int4pack: inner_k_tiles must be 2, 4 or 8, got 3");
  std::vector<float> qf(64);
  expect_error([&] { convert_weight_to_int4pack(TensorView::contiguous(qf.data(), DType::kFloat32, {2, 32}), TensorView::contiguous(packed.data(), DType::kUInt8, {2, 16}), 8, Options{Backend::kReference}); },
               "convert_weight_to_int4pack: q must be int32 [N, K] or uint8 [N, K/2], got float32");
}

TEST(Errors, QuantizerRejectsNonFinite) {
  std::vector<float> w(32, 1.0f), sz(2);
  std::vector<int32_t> q(32);
  w[7] = std::nanf("");
  expect_error([&] { group_quantize(TensorView::contiguous(w.data(), DType::kFloat32, {1, 32}), 32, TensorView::contiguous(q.data(), DType::kInt32, {1, 32}), TensorView::contiguous(sz.data(), DType::kFloat32, {1, 1, 2})); },
               "group_quantize: W must be finite, got nan at W[0][7]");
  w[7] = INFINITY;
  expect_error([&] { group_quantize(TensorView::contiguous(w.data(), DType::kFloat32, {1, 32}), 32, TensorView::contiguous(q.data(), DType::kInt32, {1, 32}), TensorView::contiguous(sz.data(), DType::kFloat32, {1, 1, 2})); },
               "got inf at W[0][7]");
}

TEST(Errors, CudaUnavailableOrWrongDevice) {
  if (backend_available(Backend::kCuda)) GTEST_SKIP() << "a GPU is present; tests/cuda covers it";
  Fixture f;
  expect_error([&] { weight_int4pack_mm(f.p.a_view(), f.p.q_view(), 32, f.p.sz_view(), f.c_view(), Options{Backend::kCuda}); },
               "weight_int4pack_mm: backend cuda needs tensors on a CUDA device, got cpu");
  auto a = f.p.a_view();
  a.device = Device::cuda(0);
  expect_error([&] { weight_int4pack_mm(a, f.p.q_view(), 32, f.p.sz_view(), f.c_view()); },
               "weight_int4pack_mm: backend cuda is not available");
}

TEST(Errors, ParseBackend) {
  expect_error([] { parse_backend("tpu"); },
               "parse_backend: backend must be one of auto, reference, cpu, cuda, got 'tpu'");
}

}  // namespace
}  // namespace int4mm::testing
