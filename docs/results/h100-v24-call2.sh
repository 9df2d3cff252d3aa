#!/usr/bin/env bash
# v24 call 2: two changes to gemm_wgmma at 16 activation rows that call 1's
# ablation suggested, in builds of one tree (bf16, group 128, the workbench's
# 16-token grids on 8192 x 8192, 4096 x 14336, 28672 x 8192):
#   base   main (v23)
#   acc2   two accumulator sets, alternating by step (at <= 32 tokens), added
#          up after the main loop: two independent wgmma chains
#   pf     the 16-byte cp.async copies with an L2 prefetch-size hint (.L2::256B)
#   abl3 / pf3   the copy pipeline alone (call 1's abl3), without / with the hint
#   proto  main's workbench with docs/results/v24-wgemv-proto.patch (the prototype: a
#          block's warpgroups split K, weights loaded straight into registers,
#          activations through a double buffer per warpgroup, named barriers)
# Carry: /tmp/v24-carry (-DINT4MM_WGMMA_ACC2=1, -DINT4MM_WGMMA_L2PF=1,
# -DINT4MM_WGMMA_ABLATE=3). Two rounds, alternating (abl3 and pf3 in the first only).
source docs/results/h100-v23-lib.sh  # unpacks the carry into /tmp/bin; $R, pack
SH=8192x8192,4096x14336,28672x8192
F='T16 S6 U2 streamk|T16 S4 U4 cluster pdl|T16 S4 U2 cluster2 pdl|T16 S6 U2 cluster2 pdl|T16 S3 U4 cluster pdl|T16 S4 U2 split4'
for round in 1 2; do
  timeout 40 /tmp/bin/proto/int4mm_tune_mma $SH 'wgemv|T16 S4 U4 cluster pdl|T16 S4 U2 cluster2 pdl|T16 S6 U2 streamk' \
    128 16 > $R/proto-$round.txt 2>&1
  echo "== proto round $round exit $? ($SECONDS s)"; cat $R/proto-$round.txt; pack
  vs="base acc2 pf"; [ $round = 1 ] && vs="base acc2 pf abl3 pf3"
  for v in $vs; do
    timeout 120 /tmp/bin/$v/int4mm_tune_mma $SH "$F" 128 16 > $R/$v-$round.txt 2>&1
    echo "== $v round $round exit $? ($SECONDS s)"; pack
  done
done
timeout 120 /tmp/bin/base/int4mm_tune_mma $SH dispatch 128 1,16 > $R/dispatch.txt 2>&1; cat $R/dispatch.txt; pack
