#!/usr/bin/env bash
# v24 call 3: Nsight Compute (clocks left alone; the workbench's first, unrolled
# launch of each variant) on 28672 x 8192, bf16 group 128: gemm_wgmma's copy
# pipeline alone at 16 rows (call 1's abl3, stream-K S6 U2), the same grid on
# main, v24's prototype (wgemv S8 W4 B1) and gemv_mma at M = 1 (dispatch), to
# compare how the same bytes move. Carry: call 2's (/tmp/v24-carry).
source docs/results/h100-v23-lib.sh  # unpacks the carry into /tmp/bin; $R, pack
i=0
for p in "abl3|gemm_wgmma|T16 S6 U2 streamk|16" "base|gemm_wgmma|T16 S6 U2 streamk|16" \
         "proto|wgemv|wgemv S8 W4 B1|16" "base|gemv_mma|dispatch|1"; do
  i=$((i + 1))
  IFS='|' read -r v kernel variant m <<<"$p"
  echo "== profile $i: 28672x8192, $v, $variant, M = $m" | tee -a $R/ncu.txt
  timeout 100 ncu --clock-control none --section SpeedOfLight --section MemoryWorkloadAnalysis \
    --section WarpStateStats --section SchedulerStats --section Occupancy --section LaunchStats \
    -k regex:$kernel --launch-count 1 -f -o /tmp/prof-$i /tmp/bin/$v/int4mm_tune_mma 28672x8192 "$variant" 128 $m \
    > /tmp/ncu-$i.log 2>&1 || tail -5 /tmp/ncu-$i.log
  ncu -i /tmp/prof-$i.ncu-rep --page details >> $R/ncu.txt 2>&1
  echo "($SECONDS s)"; pack
done
grep -E '^== |DRAM Throughput|Duration|Issue Slots Busy|L2 Hit Rate|No Eligible|Eligible Warps|Warp Cycles Per Issued|Achieved Occupancy|Registers Per|Memory Throughput|L1/TEX Hit|Mem Busy|Max Bandwidth' $R/ncu.txt
