// The CUDA backend when int4mm is built without CUDA: it reports itself
// unavailable, and the validation layer refuses to call the rest.
#include "core/backend.h"
#include "core/check.h"

namespace int4mm::detail::cuda {

namespace {
[[noreturn]] void not_built(const char* op) {
  fail(op, "int4mm was built without CUDA (configure with -DINT4MM_CUDA=ON where nvcc is present)");
}
}  // namespace

bool available() { return false; }
PackedShape packed_shape(int64_t, int64_t) { not_built("packed_shape"); }
void pack(const void*, bool, int64_t, int64_t, uint8_t*, const Options&, int) { not_built("convert_weight_to_int4pack"); }
void unpack(const uint8_t*, int64_t, int64_t, void*, bool, const Options&, int) { not_built("unpack"); }
void mm(const MmArgs&) { not_built("weight_int4pack_mm"); }
void dequantize(const DequantArgs&) { not_built("dequantize"); }

}  // namespace int4mm::detail::cuda
