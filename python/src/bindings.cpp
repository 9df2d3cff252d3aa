// int4mm._C: the public C++ API (include/int4mm/int4mm.h) for Python.
//
// Every function takes its arrays, outputs included, as nanobind ndarrays:
// DLPack views of numpy, torch (CPU and CUDA) or cupy memory, never copied.
// Each view becomes an int4mm::TensorView (dtype, device, shape, strides in
// elements) and the C++ validation layer does all the checking, so the
// messages are the library's own. Output allocation, framework choice and the
// CUDA stream lookup live in python/int4mm/ops.py; this file stays thin.
//
//   DLPack dtype        -> DType        DLPack device      -> Device
//   float32/16, bf16    -> kFloat*      cpu, cuda_host     -> cpu
//   int32, uint8        -> kInt32/kUInt8 cuda              -> cuda:<id>
//   uint16              -> kBFloat16 (the bits of ml_dtypes.bfloat16: numpy
//                          exports no bfloat16, so ops.py passes a uint16 view)
//
// weight_int4pack_mm_torch is the same matmul for torch tensors, read from
// their attributes instead of DLPack: the per-layer decode hot path.
//
// int4mm::Error becomes int4mm.Int4mmError (a ValueError) with the same message.
// The GIL is released while the library runs.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "int4mm/int4mm.h"

namespace nb = nanobind;

namespace {

using Array = nb::ndarray<nb::ro>;  // any dtype, device, strides; read-only allowed

int4mm::DType to_dtype(const char* arg, const nb::dlpack::dtype& dt) {
  using Code = nb::dlpack::dtype_code;
  const auto code = static_cast<Code>(dt.code);
  if (dt.lanes == 1) {
    if (code == Code::Float && dt.bits == 32) return int4mm::DType::kFloat32;
    if (code == Code::Float && dt.bits == 16) return int4mm::DType::kFloat16;
    if (code == Code::Bfloat && dt.bits == 16) return int4mm::DType::kBFloat16;
    if (code == Code::UInt && dt.bits == 16) return int4mm::DType::kBFloat16;
    if (code == Code::Int && dt.bits == 32) return int4mm::DType::kInt32;
    if (code == Code::UInt && dt.bits == 8) return int4mm::DType::kUInt8;
  }
  throw int4mm::Error(std::string(arg) +
                      " must be float32, float16, bfloat16, int32 or uint8, got DLPack dtype (code " +
                      std::to_string(int(dt.code)) + ", bits " + std::to_string(int(dt.bits)) +
                      ", lanes " + std::to_string(int(dt.lanes)) + ")");
}

int4mm::Device to_device(const char* arg, int32_t device_type, int32_t device_id) {
  if (device_type == nb::device::cpu::value || device_type == nb::device::cuda_host::value) {
    return int4mm::Device::cpu();
  }
  if (device_type == nb::device::cuda::value) return int4mm::Device::cuda(device_id);
  throw int4mm::Error(std::string(arg) + " must be on the cpu or a CUDA device, got DLPack device type " +
                      std::to_string(device_type));
}

// A DLPack view as a TensorView. `op` and `arg` name the caller in errors.
int4mm::TensorView to_view(const char* op, const char* arg, const Array& a) {
  const std::string where = std::string(op) + ": " + arg;
  int4mm::TensorView v;
  if (a.ndim() > size_t(int4mm::TensorView::kMaxDims)) {
    throw int4mm::Error(where + " must have at most " +
                        std::to_string(int4mm::TensorView::kMaxDims) + " dimensions, got " +
                        std::to_string(a.ndim()));
  }
  v.data = const_cast<void*>(a.data());
  v.dtype = to_dtype(where.c_str(), a.dtype());
  v.device = to_device(where.c_str(), a.device_type(), a.device_id());
  v.ndim = int(a.ndim());
  for (int d = 0; d < v.ndim; ++d) {
    v.shape[d] = int64_t(a.shape(size_t(d)));
    v.strides[d] = int64_t(a.stride(size_t(d)));
  }
  // An empty array's strides mean nothing (exporters report 0 or anything):
  // describe it as contiguous so that layout checks judge only real data.
  if (v.numel() == 0) {
    int64_t stride = 1;
    for (int d = v.ndim - 1; d >= 0; --d) {
      v.strides[d] = stride;
      stride *= std::max<int64_t>(v.shape[d], 1);
    }
  }
  return v;
}

// The torch dtypes, looked up once (leaked on purpose: no destructor runs
// after the interpreter is gone).
struct TorchDTypes {
  nb::object float32, float16, bfloat16, int32, uint8;
};

const TorchDTypes& torch_dtypes() {
  static const TorchDTypes* dtypes = [] {
    nb::module_ torch = nb::module_::import_("torch");
    return new TorchDTypes{torch.attr("float32"), torch.attr("float16"), torch.attr("bfloat16"),
                           torch.attr("int32"), torch.attr("uint8")};
  }();
  return *dtypes;
}

// A torch.Tensor as a TensorView, read from its attributes: the hot path of
// torch.ops.int4mm.weight_int4pack_mm. DLPack costs a few microseconds per
// tensor (a Python-level __dlpack__ and a capsule); decode calls the matmul
// once per layer per token, so those microseconds add up.
int4mm::TensorView torch_view(const char* op, const char* arg, nb::handle t) {
  const std::string where = std::string(op) + ": " + arg;
  const TorchDTypes& dt = torch_dtypes();
  int4mm::TensorView v;
  nb::object dtype = t.attr("dtype");
  if (dtype.is(dt.float32)) v.dtype = int4mm::DType::kFloat32;
  else if (dtype.is(dt.bfloat16)) v.dtype = int4mm::DType::kBFloat16;
  else if (dtype.is(dt.float16)) v.dtype = int4mm::DType::kFloat16;
  else if (dtype.is(dt.int32)) v.dtype = int4mm::DType::kInt32;
  else if (dtype.is(dt.uint8)) v.dtype = int4mm::DType::kUInt8;
  else {
    throw int4mm::Error(where + " must be float32, float16, bfloat16, int32 or uint8, got " +
                        nb::cast<std::string>(nb::str(dtype)));
  }
  nb::object device = t.attr("device");
  const std::string type = nb::cast<std::string>(device.attr("type"));
  if (type == "cuda") {
    v.device = int4mm::Device::cuda(nb::cast<int>(device.attr("index")));
  } else if (type != "cpu") {
    throw int4mm::Error(where + " must be on the cpu or a CUDA device, got " + type);
  }
  nb::tuple shape = nb::borrow<nb::tuple>(t.attr("shape"));
  nb::tuple strides = nb::borrow<nb::tuple>(t.attr("stride")());
  if (shape.size() > size_t(int4mm::TensorView::kMaxDims)) {
    throw int4mm::Error(where + " must have at most " +
                        std::to_string(int4mm::TensorView::kMaxDims) + " dimensions, got " +
                        std::to_string(shape.size()));
  }
  v.ndim = int(shape.size());
  for (int d = 0; d < v.ndim; ++d) {
    v.shape[d] = nb::cast<int64_t>(shape[size_t(d)]);
    v.strides[d] = nb::cast<int64_t>(strides[size_t(d)]);
  }
  v.data = reinterpret_cast<void*>(nb::cast<uintptr_t>(t.attr("data_ptr")()));
  if (v.numel() == 0) {  // as in to_view: an empty tensor's strides mean nothing
    int64_t stride = 1;
    for (int d = v.ndim - 1; d >= 0; --d) {
      v.strides[d] = stride;
      stride *= std::max<int64_t>(v.shape[d], 1);
    }
  }
  return v;
}

int4mm::Options to_options(const std::string& backend, uintptr_t stream, int threads) {
  int4mm::Options options;
  options.backend = int4mm::parse_backend(backend);
  options.stream = reinterpret_cast<void*>(stream);
  options.threads = threads;
  return options;
}

int4mm::QuantizerVariant to_variant(const std::string& variant) {
  if (variant == "stored_rounded") return int4mm::QuantizerVariant::kStoredRounded;
  if (variant == "pytorch") return int4mm::QuantizerVariant::kPyTorch;
  throw int4mm::Error("group_quantize: variant must be \"stored_rounded\" or \"pytorch\", got \"" +
                      variant + "\"");
}

}  // namespace

NB_MODULE(_C, m) {
  m.doc() = "int4mm C++ library binding (use the int4mm package, not this module)";
  m.attr("__version__") = INT4MM_VERSION;
  nb::exception<int4mm::Error>(m, "Int4mmError", PyExc_ValueError);

  m.def("backend_available",
        [](const std::string& backend) { return int4mm::backend_available(int4mm::parse_backend(backend)); },
        nb::arg("backend"));

  m.def(
      "packed_shape",
      [](const std::string& backend, int64_t n, int64_t k) {
        const int4mm::PackedShape s = int4mm::packed_shape(int4mm::parse_backend(backend), n, k);
        return std::make_pair(s.rows, s.cols);
      },
      nb::arg("backend"), nb::arg("n"), nb::arg("k"));

  m.def(
      "group_quantize",
      [](Array w, int64_t group_size, Array q, Array scales_and_zeros, const std::string& variant) {
        const char* op = "group_quantize";
        const auto v = to_variant(variant);
        const auto wv = to_view(op, "W", w), qv = to_view(op, "q", q);
        const auto sv = to_view(op, "scales_and_zeros", scales_and_zeros);
        nb::gil_scoped_release release;
        int4mm::group_quantize(wv, group_size, qv, sv, v);
      },
      nb::arg("w"), nb::arg("group_size"), nb::arg("q"), nb::arg("scales_and_zeros"),
      nb::arg("variant"));

  m.def(
      "convert_weight_to_int4pack",
      [](Array q, Array packed, int64_t inner_k_tiles, const std::string& backend, uintptr_t stream,
         int threads) {
        const char* op = "convert_weight_to_int4pack";
        const auto options = to_options(backend, stream, threads);
        const auto qv = to_view(op, "q", q), pv = to_view(op, "packed", packed);
        nb::gil_scoped_release release;
        int4mm::convert_weight_to_int4pack(qv, pv, inner_k_tiles, options);
      },
      nb::arg("q"), nb::arg("packed"), nb::arg("inner_k_tiles"), nb::arg("backend"),
      nb::arg("stream"), nb::arg("threads"));

  m.def(
      "unpack",
      [](Array packed, Array q, const std::string& backend, uintptr_t stream, int threads) {
        const char* op = "unpack";
        const auto options = to_options(backend, stream, threads);
        const auto pv = to_view(op, "packed", packed), qv = to_view(op, "q", q);
        nb::gil_scoped_release release;
        int4mm::unpack(pv, qv, options);
      },
      nb::arg("packed"), nb::arg("q"), nb::arg("backend"), nb::arg("stream"), nb::arg("threads"));

  m.def(
      "weight_int4pack_mm",
      [](Array a, Array packed, int64_t group_size, Array scales_and_zeros, Array c,
         const std::string& backend, uintptr_t stream, int threads) {
        const char* op = "weight_int4pack_mm";
        const auto options = to_options(backend, stream, threads);
        const auto av = to_view(op, "A", a), pv = to_view(op, "packed", packed);
        const auto sv = to_view(op, "scales_and_zeros", scales_and_zeros);
        const auto cv = to_view(op, "C", c);
        nb::gil_scoped_release release;
        int4mm::weight_int4pack_mm(av, pv, group_size, sv, cv, options);
      },
      nb::arg("a"), nb::arg("packed"), nb::arg("group_size"), nb::arg("scales_and_zeros"),
      nb::arg("c"), nb::arg("backend"), nb::arg("stream"), nb::arg("threads"));

  m.def(
      "weight_int4pack_mm_torch",
      [](nb::handle a, nb::handle packed, int64_t group_size, nb::handle scales_and_zeros,
         nb::handle c, uintptr_t stream) {
        const char* op = "weight_int4pack_mm";
        int4mm::Options options;
        options.stream = reinterpret_cast<void*>(stream);
        const auto av = torch_view(op, "A", a), pv = torch_view(op, "packed", packed);
        const auto sv = torch_view(op, "scales_and_zeros", scales_and_zeros);
        const auto cv = torch_view(op, "C", c);
        nb::gil_scoped_release release;
        int4mm::weight_int4pack_mm(av, pv, group_size, sv, cv, options);
      },
      nb::arg("a"), nb::arg("packed"), nb::arg("group_size"), nb::arg("scales_and_zeros"),
      nb::arg("c"), nb::arg("stream"),
      "weight_int4pack_mm for torch tensors, read without DLPack (backend auto)");

  m.def(
      "dequantize",
      [](Array packed, int64_t group_size, Array scales_and_zeros, Array w, const std::string& backend,
         uintptr_t stream, int threads) {
        const char* op = "dequantize";
        const auto options = to_options(backend, stream, threads);
        const auto pv = to_view(op, "packed", packed);
        const auto sv = to_view(op, "scales_and_zeros", scales_and_zeros);
        const auto wv = to_view(op, "W", w);
        nb::gil_scoped_release release;
        int4mm::dequantize(pv, group_size, sv, wv, options);
      },
      nb::arg("packed"), nb::arg("group_size"), nb::arg("scales_and_zeros"), nb::arg("w"),
      nb::arg("backend"), nb::arg("stream"), nb::arg("threads"));
}
