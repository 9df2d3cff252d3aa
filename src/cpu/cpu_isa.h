// Runtime ISA selection for the CPU backend.
//
// The best instruction set is read once from CPUID; INT4MM_CPU_ISA (read at
// the same time) or set_isa_override() may force a LOWER one, so that every
// kernel path can be tested on one machine. Asking for an ISA the CPU lacks
// is an int4mm::Error, never a silent downgrade.
//
//   kScalar      portable C++, any CPU
//   kAvx2        AVX2 + FMA + F16C                 (8 float lanes)
//   kAvx512      AVX-512 F/BW/VL/DQ + F16C + FMA    (16 float lanes)
//   kAvx512Bf16  kAvx512 + AVX512_BF16: bfloat16 activations use VDPBF16PS,
//                two products per float lane and instruction
//   kAmx         kAvx512Bf16 + AMX-TILE/AMX-BF16, with the tile data state
//                granted by Linux (arch_prctl): bfloat16 activations from
//                M = 2 on use TDPBF16PS
#pragma once

#include <string>

namespace int4mm::detail::cpu {

enum class Isa : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2, kAvx512Bf16 = 3, kAmx = 4 };

const char* isa_name(Isa isa);  // "scalar", "avx2", "avx512", "avx512_bf16", "amx"

// Parses a name accepted by INT4MM_CPU_ISA; an unknown name is an Error.
Isa parse_isa(const std::string& name);

// The best ISA this CPU and OS support (CPUID, once).
Isa detected_isa();

// The ISA the kernels use now: the override if one is set, else the
// environment's INT4MM_CPU_ISA if set, else detected_isa().
Isa current_isa();

// Forces `isa` for later calls (tests). Throws int4mm::Error when the CPU
// lacks it. Not thread-safe against concurrent matmuls.
void set_isa_override(Isa isa);
void clear_isa_override();

}  // namespace int4mm::detail::cpu
