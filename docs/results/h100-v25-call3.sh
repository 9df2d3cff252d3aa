#!/usr/bin/env bash
# v25's next profile (written in v25, not run: no device time was left):
# gemv_mma at M = 8 against M = 16 on 28672 x 8192, bf16 group 128, with
# Nsight Compute (clocks left alone; the workbench's first launch of each
# variant). The two shapes are dispatch's at those M (4 tiles of 2 steps,
# scaled; 8 warps at M = 8, 16 warps with staged A at M = 16), and the
# 8-warp staged one at M = 16, to see where M = 16's extra time goes: issue
# slots, stalls per instruction, DRAM busy (docs/cuda.md, v25, What is left).
# Carry: build/carry.tar.xz with new/int4mm_tune_mma of main.
source docs/results/h100-v23-lib.sh  # unpacks the carry into /tmp/bin; $R, pack
i=0
for p in "gemv M1 T4 W8 S2 -- sc B2|8" "gemv M2 T4 W16 S2 st sc B1|16" "gemv M2 T4 W8 S2 st sc B2|16"; do
  i=$((i + 1))
  IFS='|' read -r variant m <<<"$p"
  echo "== profile $i: 28672x8192, $variant, M = $m" | tee -a $R/ncu.txt
  timeout 100 ncu --clock-control none --section SpeedOfLight --section MemoryWorkloadAnalysis \
    --section WarpStateStats --section SchedulerStats --section Occupancy --section LaunchStats \
    --section InstructionStats -k regex:gemv_mma --launch-count 1 -f -o /tmp/prof-$i \
    /tmp/bin/new/int4mm_tune_mma 28672x8192 "$variant" 128 $m > /tmp/ncu-$i.log 2>&1 || tail -5 /tmp/ncu-$i.log
  ncu -i /tmp/prof-$i.ncu-rep --page details >> $R/ncu.txt 2>&1
  echo "($SECONDS s)"; pack
done
grep -E '^== |DRAM Throughput|Duration|Issue Slots Busy|No Eligible|Eligible Warps|Warp Cycles Per Issued|Achieved Occupancy|Registers Per|Executed Instructions  ' $R/ncu.txt
