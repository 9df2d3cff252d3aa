#!/usr/bin/env bash
# v27 call 1: gemv_mma's whole chunks (no bounds checks, addresses as fixed
# offsets from per-lane bases) against main at v26 (old), bf16 / fp16:
#   1. the gemv_mma tests (every compiled shape on odd shapes), the public
#      and chained-call tests
#   2. the workbench, old against new, every gemv_mma shape at M = 16 on the
#      six shapes
#   3. int4mm bench A/B, two rounds in alternation: old against new with
#      M = 9..16 routed as before (INT4MM_GEMV16=0), M = 1, 2, 4, 8, 16,
#      group 128, both dtypes; then new against its default (g16: gemv_mma
#      at M = 9..16 for groups 64 / 128) at M = 9, 12, 16; groups 32 and 64
#      at M = 1, 4 (old against new), group 64 at M = 16 (new against g16)
#   4. memcheck and racecheck on the gemv_mma tests
#   5. the workbench at M = 1 and 8, old against new
# Ran up to the group A/B (254 s wall): gb's fifth argument was unset under
# `set -u`; fixed here, the rest ran in call 2 (h100-v27-call2.sh).
# Carry: build/carry.tar.xz: old/ (int4mm, int4mm_tune_mma of main at v26),
# new/ (int4mm, test_cuda, int4mm_tune_mma of this tree).
source docs/results/h100-v23-lib.sh  # unpacks the carry into /tmp/bin; $R, pack
tests gemv 150 '*GemvShapes*:CudaKernels.Public*:CudaKernels.Gemv*'
tune() {  # variant group filter M-list
  timeout 150 /tmp/bin/$1/int4mm_tune_mma $S "$3" $2 $4 > $R/tune-$1-g$2-$3-m${4//,/_}.txt 2>&1
  echo "== workbench $1 group $2 $3 M $4 exit $? ($SECONDS s)"; pack
}
tune old 128 gemv 16; tune new 128 gemv 16
variant_cmd() {
  case $1 in
    old) echo /tmp/bin/old/int4mm ;;
    new) echo env INT4MM_GEMV16=0 /tmp/bin/new/int4mm ;;
    g16) echo /tmp/bin/new/int4mm ;;
  esac
}
ab k old new 1,2,4,8,16 bf16,fp16
ab s16 new g16 9,12,16 bf16,fp16
gb() {  # variant group round M-list tag
  timeout 60 $(variant_cmd $1) bench --backend cuda --shapes $S --m $4 --dtype bf16 --group-size $2 \
    --json $R/g$2${5:-}/$1-bf16-$3.json > $R/g$2${5:-}/$1-bf16-$3.txt 2>&1
  echo "g$2${5:-}: $1 round $3 exit $? ($SECONDS s)"
}
gab() {  # group base variant M-list [tag]
  local t=${5:-}
  mkdir -p $R/g$1$t
  gb $2 $1 1 $4 $t; gb $3 $1 1 $4 $t; gb $3 $1 2 $4 $t; gb $2 $1 2 $4 $t
  python3 bench/ab_table.py $R/g$1$t --variants $2,$3 --dtypes bf16 --rounds 2 | tee $R/ab-g$1$t.txt; pack
}
gab 32 old new 1,4; gab 64 old new 1,4; gab 64 new g16 16 -m16
tests memcheck 200 '*GemvShapes*m13_*:*TwoBuffers*m4_*:*Warps12*k4736*' \
  'compute-sanitizer --tool memcheck --error-exitcode 9'
tests racecheck 120 '*Scaled16Group128*m13_*:*TwoBuffers*m3_n40*bfloat16*' \
  'compute-sanitizer --tool racecheck --error-exitcode 9'
tune old 128 gemv 1,8; tune new 128 gemv 1,8
