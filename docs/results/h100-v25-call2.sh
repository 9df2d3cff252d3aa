#!/usr/bin/env bash
# v25 call 2: call 1's one win for two chunks a warp, group 32 at M = 1 on
# 14336 x 4096 in the workbench, now in dispatch (group 32, M <= 4, where
# 1-tile blocks of 12 warps fit 2 per SM; INT4MM_GEMV_X2=1 turns it on):
#   1. its tests (gemv_mma_with, group 32), the public and chained-call tests
#   2. the workbench at group 32, M = 1 and 4: 12-warp shapes with one
#      buffer and two beside dispatch's scaled 8-warp shapes
#   3. int4mm bench A/B, group 32, INT4MM_GEMV_X2 unset (base) against =1
#      (x2), M = 1, 4, bf16 and fp16, two rounds in alternation
#   4. memcheck and racecheck on its tests
# Carry: build/carry.tar.xz: new/ (int4mm, test_cuda, int4mm_tune_mma of this tree).
source docs/results/h100-v23-lib.sh  # unpacks the carry into /tmp/bin; $R, pack
B=/tmp/bin/new
tests twobuf 60 '*TwoBuffers*:*GemvShapeOutOfRange*:CudaKernels.*Chained*:CudaKernels.Public*'
timeout 60 $B/int4mm_tune_mma 4096x4096,14336x4096,8192x8192 'W12|gemv M1 T1 W8 S2 -- sc B3|gemv M1 T2 W8 S2 -- sc B3' \
  32 1,4 > $R/g32-tune.txt 2>&1
echo "== workbench exit $? ($SECONDS s)"; cat $R/g32-tune.txt; pack
G=4096x4096,14336x4096,8192x8192,8192x28672
g32() {  # variant dtype round
  timeout 60 env $([ $1 = x2 ] && echo INT4MM_GEMV_X2=1 || echo INT4MM_GEMV_X2=0) $B/int4mm bench --backend cuda \
    --shapes $G --m 1,4 --dtype $2 --group-size 32 --json $R/g32/$1-$2-$3.json > $R/g32/$1-$2-$3.txt 2>&1
  echo "g32: $1 $2 round $3 exit $? ($SECONDS s)"
}
mkdir -p $R/g32
for d in bf16 fp16; do g32 base $d 1; g32 x2 $d 1; g32 x2 $d 2; g32 base $d 2; done
python3 bench/ab_table.py $R/g32 --variants base,x2 --dtypes bf16,fp16 --rounds 2 | tee $R/ab-g32.txt; pack
tests memcheck 90 '*TwoBuffers*' 'compute-sanitizer --tool memcheck --error-exitcode 9'
tests racecheck 60 '*TwoBuffers*m1_n100*:*TwoBuffers*m3_n40*bfloat16*' 'compute-sanitizer --tool racecheck --error-exitcode 9'
