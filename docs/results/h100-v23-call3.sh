#!/usr/bin/env bash
# v23 call 3 (docs/cuda.md, v23.2): the stream-K grids' arrival counters
# zeroed by a kernel that lets the call's launch start at once (PDL), in
# place of a memset node that holds it back. One build for sm_90a carried
# in build/carry.tar.xz (`bash docs/results/h100-v23-build.sh`):
# new/{int4mm,test_cuda,int4mm_tune_mma}. INT4MM_ZERO_KERNEL=0 gives the
# memset, so the A/B runs one binary twice ("memset" with it set, "kernel"
# without). Stages:
#   1. the stream-K and chained-call tests, memcheck and racecheck of them;
#   2. A/B at M = 16, 32, 64, 128, 256, 1024 on the six shapes: memset,
#      kernel, kernel, memset (bf16, fp16);
#   3. the whole CUDA suite.
# Outputs in $OUT/r, packed into $OUT/r.tgz after each stage.
variant_cmd() { echo "env INT4MM_ZERO_KERNEL=$([ $1 = memset ] && echo 0 || echo 1) /tmp/bin/new/int4mm"; }
source docs/results/h100-v23-lib.sh

tests test_streamk 120 '*Chained*:*streamk*:ManyTiles/*:CudaKernels.*Wgmma*:CudaKernels.Public*'
tests memcheck 150 'CudaKernels.WgmmaChained*:*t16_streamk_m70*:*t64_streamk_m70*' \
  'compute-sanitizer --tool memcheck --error-exitcode 9'
tests racecheck 120 '*t64_streamk_m70_n300*bfloat16_g128:*t16_streamk_m70_n300*float16_g32' \
  'compute-sanitizer --tool racecheck --error-exitcode 9'
ab wide memset kernel 16,32,64,128,256,1024 bf16,fp16
tests test_all 200 '*'
echo "done ($SECONDS s)"; pack
