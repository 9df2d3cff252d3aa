#!/usr/bin/env bash
# v23 call 6: the workbench at M = 16 on the three shapes that miss 1.15x
# M = 1 there (8192 x 8192, 4096 x 14336, 28672 x 8192), every 16-token
# gemm_wgmma and gemm_wgmma_ws grid against the dispatched one, now that
# stream-K grids launch with PDL after their zeroing kernel (v23.2): v11 and
# v12 chose clusters and lone blocks there while stream-K grids had a
# memset and no PDL. Carry: `bash docs/results/h100-v23-build.sh` (new/).
variant_cmd() { echo "/tmp/bin/$1/int4mm"; }
source docs/results/h100-v23-lib.sh
for filter in dispatch T16; do
  timeout 200 /tmp/bin/new/int4mm_tune_mma 8192x8192,4096x14336,28672x8192 "$filter" 128 16 \
    > $R/tune-m16-$filter.txt 2>&1
  echo "tune $filter exit $? ($SECONDS s)"; cat $R/tune-m16-$filter.txt; pack
done
