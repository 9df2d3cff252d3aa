#!/usr/bin/env bash
# v23 call 4 (docs/cuda.md, v23.2 and v23.3): the stream-K counters zeroed
# by a kernel, the call's launch with PDL after it (v23.2, call 3), and the
# stream-K finisher adding every part in block order from zero, its own
# read back too, so that C no longer depends on which block arrives last
# (v23.3). Builds for sm_90a in build/carry.tar.xz (`bash
# docs/results/h100-v23-build.sh base`): new/{int4mm,test_cuda,
# int4mm_tune_mma} (this tree), base/int4mm (HEAD before v23). Stages:
#   1. the stream-K, chained-call and wgmma tests five times over (call 3
#      saw chained stream-K calls at 32 and 128 rows differ from
#      synchronized ones in some bits: the finisher's order); memcheck and
#      racecheck of them;
#   2. A/B at M = 16 .. 1024 on the six shapes: base, new, new, base (bf16,
#      fp16);
#   3. the whole CUDA suite and the selftest.
# `... tables` then runs new's tables (every M, bf16 and fp16), tinygemm at
# M <= 4 and the group sizes; `... final` (call 5, after v23.3's finisher
# kept the first part in registers where it is its own) the tests three
# times, the sanitizers, the A/B, the tables and the whole suite. Outputs in $OUT/r, packed into $OUT/r.tgz
# after each stage.
variant_cmd() { echo "/tmp/bin/$1/int4mm"; }
source docs/results/h100-v23-lib.sh

if [ "${1:-}" = tables ]; then tables; echo "done ($SECONDS s)"; exit; fi
if [ "${1:-}" = final ]; then  # call 5: the finisher's first part kept in registers where it is its own
  tests test_streamk 100 '*Chained*:*streamk*:ManyTiles/*:CudaKernels.*Wgmma*' '' --gtest_repeat=3
  tests memcheck 100 'CudaKernels.WgmmaChained*:*t16_streamk_m70*:*t64_streamk_m70*' \
    'compute-sanitizer --tool memcheck --error-exitcode 9'
  tests racecheck 60 '*t64_streamk_m70_n300*bfloat16_g128:*t16_streamk_m70_n300*float16_g32' \
    'compute-sanitizer --tool racecheck --error-exitcode 9'
  ab final base new 16,32,64,128,256,1024 bf16,fp16
  tables
  tests test_all 200 '*'
  timeout 30 /tmp/bin/new/int4mm selftest 2>&1 | tail -3
  echo "done ($SECONDS s)"; pack; exit
fi
tests test_streamk 150 '*Chained*:*streamk*:ManyTiles/*:CudaKernels.*Wgmma*' '' --gtest_repeat=5
tests memcheck 150 'CudaKernels.WgmmaChained*:*t16_streamk_m70*:*t64_streamk_m70*:ManyTiles/*streamk*k160_bfloat16_g128' \
  'compute-sanitizer --tool memcheck --error-exitcode 9'
tests racecheck 120 '*t64_streamk_m70_n300*bfloat16_g128:*t16_streamk_m70_n300*float16_g32' \
  'compute-sanitizer --tool racecheck --error-exitcode 9'
ab wide base new 16,32,64,128,256,1024 bf16,fp16
tests test_all 200 '*'
timeout 30 /tmp/bin/new/int4mm selftest 2>&1 | tail -3
echo "done ($SECONDS s)"; pack
