#!/usr/bin/env bash
# v25 call 1: gemv_mma with two chunks a warp (kBuffers = 2: a warp's next
# chunk's loads issued before this one's math; dispatch takes it at M <= 4
# where it runs 12-warp 1-tile blocks of 2 steps, and at M = 9..16, group 128,
# as 12-warp 2-tile scaled blocks, where INT4MM_GEMV_X2=1 turns it on).
# In this order (the first two steps of 2. and 1. come first):
#   1. its tests, then memcheck and racecheck on them
#   2. the workbench at M = 16 (bf16, group 128, CUDA-graph replay, weights
#      rotated past L2): the x2 shapes beside main's gemv_mma and gemm_wgmma
#      grids and dispatch, and v24's prototype with a ring of chunks
#      (docs/results/v24-wgemv-proto-ring.patch, "wgemv S W B A"), two rounds
#   3. int4mm bench A/B, INT4MM_GEMV_X2=0 (base) against on (x2), M = 1, 4, 16
#   4. the workbench's x2 shapes at M = 1 and 8, groups 32 / 64 at M = 1
#   5. the whole CUDA suite
# Carry: build/carry.tar.xz: new/ (int4mm, test_cuda, int4mm_tune_mma of
# this tree), ring/ (int4mm_tune_mma of v24 + the ring patch).
variant_cmd() { echo "env INT4MM_GEMV_X2=$([ $1 = base ] && echo 0 || echo 1) /tmp/bin/new/int4mm"; }
source docs/results/h100-v23-lib.sh  # unpacks the carry into /tmp/bin; $R, pack
B=/tmp/bin/new
SH=8192x8192,4096x14336,28672x8192,8192x28672
F16='x2|gemv M2 T2 W8 S2 st -- B2|gemv M2 T4 W16 S2 st sc B1|gemv M2 T4 W8 S2 st sc B2|T16 S4 U4 cluster pdl|T16 S4 U2 cluster2 pdl|T16 S6 U2 streamk|dispatch'
x2_16() {  # round
  timeout 90 env INT4MM_GEMV_X2=0 $B/int4mm_tune_mma $SH "$F16" 128 16 > $R/x2-16-$1.txt 2>&1
  echo "== x2 M=16 round $1 exit $? ($SECONDS s)"; cat $R/x2-16-$1.txt; pack
}
ring() {  # round
  timeout 60 /tmp/bin/ring/int4mm_tune_mma 8192x8192,4096x14336,28672x8192 'wgemv|T16 S4 U4 cluster pdl|T16 S6 U2 streamk' \
    128 16 > $R/ring-$1.txt 2>&1
  echo "== ring round $1 exit $? ($SECONDS s)"; cat $R/ring-$1.txt; pack
}
# In order of what matters most, should the device time run out.
x2_16 1
tests twobuf 60 '*TwoBuffers*:*GemvShapeOutOfRange*:CudaKernels.*Chained*:CudaKernels.Public*'
ring 1
ab x2ab base x2 1,4,16 bf16
x2_16 2
ring 2
tests memcheck 120 '*TwoBuffers*' 'compute-sanitizer --tool memcheck --error-exitcode 9'
tests racecheck 90 '*TwoBuffers*m9_n40*:*TwoBuffers*m1_n100*bfloat16*' 'compute-sanitizer --tool racecheck --error-exitcode 9'
S6=4096x4096,4096x14336,14336x4096,8192x8192,8192x28672,28672x8192
timeout 90 env INT4MM_GEMV_X2=0 $B/int4mm_tune_mma $S6 'x2|dispatch' 128 1,8 > $R/x2-1-8.txt 2>&1
echo "== x2 M=1,8 exit $? ($SECONDS s)"; cat $R/x2-1-8.txt; pack
for g in 32 64; do
  timeout 60 $B/int4mm_tune_mma 8192x28672,8192x8192,14336x4096 'x2|dispatch' $g 1 > $R/x2-g$g.txt 2>&1
  echo "== x2 group $g exit $? ($SECONDS s)"; cat $R/x2-g$g.txt; pack
done
tests test_all 200 '*'
