#!/usr/bin/env bash
# v26 call 3: v26.1's two-chunk rules (group 32 staged 2-tile 8-warp blocks
# where they fit one wave, M = 2..4 or beyond 12-warp blocks' one wave;
# group 64 12-warp blocks) against main at v26.0, in dispatch:
#   1. the new tests (TwoBuffers*, shapes out of range), public, chained calls
#   2. int4mm bench A/B, old (v26.0) against new, M = 1, 2, 4, two rounds
#      in alternation: group 32 bf16 and fp16, group 64 bf16
#   3. memcheck and racecheck on the two-chunk tests
#   4. new's group-size table at M = 1, bf16, groups 32, 64, 128 in one run
# Carry: build/carry.tar.xz: old/int4mm (v26.0), new/ (int4mm, test_cuda,
# int4mm_tune_mma of this tree).
source docs/results/h100-v23-lib.sh  # unpacks the carry into /tmp/bin; $R, pack
tests x2 120 '*TwoBuffers*:*GemvShapeOutOfRange*:CudaKernels.Public*:CudaKernels.*Chained*'
gb() {  # variant group dtype round
  timeout 60 /tmp/bin/$1/int4mm bench --backend cuda --shapes $S --m 1,2,4 --dtype $3 --group-size $2 \
    --json $R/g$2/$1-$3-$4.json > $R/g$2/$1-$3-$4.txt 2>&1
  echo "g$2: $1 $3 round $4 exit $? ($SECONDS s)"
}
for p in 32:bf16,fp16 64:bf16; do
  g=${p%%:*} dtypes=${p#*:}
  mkdir -p $R/g$g
  for d in ${dtypes//,/ }; do gb old $g $d 1; gb new $g $d 1; gb new $g $d 2; gb old $g $d 2; done
  python3 bench/ab_table.py $R/g$g --variants old,new --dtypes $dtypes --rounds 2 | tee $R/ab-g$g.txt; pack
done
tests memcheck 120 '*TwoBuffers*' 'compute-sanitizer --tool memcheck --error-exitcode 9'
tests racecheck 90 '*TwoBuffers*m1_n100*:*TwoBuffers*m3_n40*bfloat16*' 'compute-sanitizer --tool racecheck --error-exitcode 9'
for g in 32 64 128; do
  timeout 60 /tmp/bin/new/int4mm bench --backend cuda --shapes $S --m 1 --dtype bf16 --group-size $g \
    --json $R/groups-$g.json > $R/groups-$g.txt 2>&1
  echo "== group $g bench exit $? ($SECONDS s)"; pack
done
