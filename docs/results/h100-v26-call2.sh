#!/usr/bin/env bash
# v26 call 2 (main with INT4MM_GEMV_X2 on by default):
#   1. group 64 at M = 1 and 4 in the workbench on the six shapes, every
#      gemv_mma variant, then dispatch: do 12-warp blocks, with one chunk a
#      warp or two, close group 64's 1.11-1.12x (of group 128) on 14336 x
#      4096 and 8192 x 28672 as they did group 32's?
#   2. the public and chained-call tests, group 32's now through x2
#   3. the group-size table at M = 1 (bf16, groups 32-256, one machine)
#   4. the workbench at groups 32 and 128, the same way
# Carry: build/carry.tar.xz: new/ (int4mm, test_cuda, int4mm_tune_mma of this tree).
source docs/results/h100-v23-lib.sh  # unpacks the carry into /tmp/bin; $R, pack
B=/tmp/bin/new
tune() {  # group filter
  timeout 120 $B/int4mm_tune_mma $S $2 $1 1,4 > $R/g$1-$2.txt 2>&1
  echo "== workbench group $1 $2 exit $? ($SECONDS s)"; pack
}
tune 64 gemv; tune 64 dispatch
tests public 120 'CudaKernels.Public*:CudaKernels.*Chained*:*TwoBuffers*'
for g in 32 64 128 256; do
  timeout 60 $B/int4mm bench --backend cuda --shapes $S --m 1 --dtype bf16 --group-size $g \
    --json $R/groups-$g.json > $R/groups-$g.txt 2>&1
  echo "== group $g bench exit $? ($SECONDS s)"; pack
done
tune 32 gemv; tune 32 dispatch; tune 128 gemv; tune 128 dispatch
