// Host side of tma.cuh: tensor maps, encoded by the driver's
// cuTensorMapEncodeTiled, which the runtime hands out (no link to libcuda).
#include <cudaTypedefs.h>

#include <mutex>

#include "cuda/common.cuh"
#include "cuda/tma.cuh"

namespace int4mm::detail::cuda {
namespace {

PFN_cuTensorMapEncodeTiled_v12000 encoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 encode = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    void* entry = nullptr;
    cudaDriverEntryPointQueryResult found{};
    INT4MM_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &entry, 12000, cudaEnableDefault,
                                                       &found));
    if (found == cudaDriverEntryPointSuccess) encode = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(entry);
  });
  if (encode == nullptr) throw Error("cuda: the driver has no cuTensorMapEncodeTiled (a CUDA 12 driver is needed)");
  return encode;
}

}  // namespace

CUtensorMap make_tensor_map_2d(const void* base, int element_bytes, int64_t elements, int64_t rows,
                               int64_t row_bytes, int box_x, int box_y, bool swizzle_128) {
  CUtensorMap map{};
  const cuuint64_t dims[2] = {cuuint64_t(elements), cuuint64_t(rows)};
  const cuuint64_t strides[1] = {cuuint64_t(row_bytes)};
  const cuuint32_t box[2] = {cuuint32_t(box_x), cuuint32_t(box_y)};
  const cuuint32_t element_strides[2] = {1, 1};
  const CUresult status =
      encoder()(&map, element_bytes == 2 ? CU_TENSOR_MAP_DATA_TYPE_UINT16 : CU_TENSOR_MAP_DATA_TYPE_UINT32, 2,
                const_cast<void*>(base), dims, strides, box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                swizzle_128 ? CU_TENSOR_MAP_SWIZZLE_128B : CU_TENSOR_MAP_SWIZZLE_NONE,
                CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (status != CUDA_SUCCESS) {
    throw Error(concat("cuda: cuTensorMapEncodeTiled failed (error ", int(status), ") for ", elements, " x ", rows,
                       " elements of ", element_bytes, " bytes, rows ", row_bytes, " bytes apart, box ", box_x,
                       " x ", box_y));
  }
  return map;
}

}  // namespace int4mm::detail::cuda
