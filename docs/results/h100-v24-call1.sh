#!/usr/bin/env bash
# v24 call 1: what holds gemm_wgmma back at 16 activation rows. The workbench's
# 16-token grids on the three shapes that miss 1.15x M = 1 (8192 x 8192,
# 4096 x 14336, 28672 x 8192), bf16 group 128, in six builds of one tree:
#   base  main (v23)
#   abl1  no dequantization: packed words from the step's weights are the A
#         fragments, 4 loads instead of 1 (no scale/zero reads, bit tricks, FMA)
#   abl2  no wgmma: the fragments are dequantized and kept, nothing multiplied
#   abl3  neither: the copy pipeline, barriers and waits alone
#   abl4  no activation copies (A's tile stays as it was: C wrong)
#   d2    three fragment buffers, a wait for all wgmma groups but the last two
#         (where kSub >= 2 and the ring is a multiple of 3: S6 U2, S3 U4)
# abl* print MISMATCH (C is wrong by construction). Two rounds, alternating.
# Carry: /tmp/v24-carry (base/ from main's build, the others from
# /tmp/build-* with -DINT4MM_WGMMA_ABLATE=1|2|3|4, -DINT4MM_WGMMA_DEPTH=2).
source docs/results/h100-v23-lib.sh  # unpacks the carry into /tmp/bin; $R, pack
SH=8192x8192,4096x14336,28672x8192
F='T16 S6 U2 streamk|T16 S4 U4 cluster pdl|T16 S4 U2 cluster2 pdl|T16 S6 U2 cluster2 pdl|T16 S3 U4 cluster pdl|T16 S4 U2 split4'
timeout 120 /tmp/bin/base/int4mm_tune_mma $SH dispatch 128 1,8,16 > $R/dispatch.txt 2>&1
echo "dispatch exit $? ($SECONDS s)"; cat $R/dispatch.txt; pack
timeout 120 /tmp/bin/base/int4mm_tune_mma $SH 'gemv M2' 128 16 > $R/gemv16.txt 2>&1
echo "gemv M = 16 exit $? ($SECONDS s)"; cat $R/gemv16.txt; pack
for round in 1 2; do
  for v in base abl1 abl2 abl3 abl4 d2; do
    timeout 120 /tmp/bin/$v/int4mm_tune_mma $SH "$F" 128 16 > $R/$v-$round.txt 2>&1
    echo "== $v round $round exit $? ($SECONDS s)"; cat $R/$v-$round.txt; pack
  done
done
