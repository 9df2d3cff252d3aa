#!/usr/bin/env bash
# v28 call 1: bf16's bias in the fold (folded gemv_mma: no packed subtract
# per weight register), the fold's sums started from zero in the mma, A's
# copy without checks in whole chunks of full rows (M >= rows staged), and
# folded kernels with A staged at M = 9..16 (tiles one after another),
# dispatched there for group 128 (INT4MM_GEMV16_FOLDED=0: scaled, as v27),
# against main at v27 (old):
#   1. the gemv_mma tests (every compiled shape on odd shapes), the public
#      and chained-call tests
#   2. int4mm bench A/B, two rounds in alternation: old against new, M = 1,
#      2, 4, 8, 16, group 128, both dtypes; new with M = 9..16 scaled (s16)
#      against new at M = 16
#   3. the workbench (new), every gemv_mma shape at M = 16 on the six shapes
#   4. memcheck and racecheck on the new shapes
# Carry: build/carry.tar.xz: old/ (int4mm, int4mm_tune_mma of main at v27),
# new/ (int4mm, test_cuda, int4mm_tune_mma of this tree).
source docs/results/h100-v23-lib.sh  # unpacks the carry into /tmp/bin; $R, pack
tests gemv 150 '*GemvShapes*:CudaKernels.Public*:CudaKernels.Gemv*'
variant_cmd() {
  case $1 in
    old) echo /tmp/bin/old/int4mm ;;
    new) echo /tmp/bin/new/int4mm ;;
    s16) echo env INT4MM_GEMV16_FOLDED=0 /tmp/bin/new/int4mm ;;
  esac
}
ab k old new 1,2,4,8,16 bf16,fp16
ab f16 s16 new 16 bf16,fp16
timeout 120 /tmp/bin/new/int4mm_tune_mma $S gemv 128 16 > $R/tune-new-m16.txt 2>&1
echo "== workbench M 16 exit $? ($SECONDS s)"; pack
tests memcheck 150 '*Folded16Staged*m13_*:*FoldedBias*:*OddShapes*m13_*g128' \
  'compute-sanitizer --tool memcheck --error-exitcode 9'
tests racecheck 90 '*Folded16Staged*m13_*bfloat16*' \
  'compute-sanitizer --tool racecheck --error-exitcode 9'
