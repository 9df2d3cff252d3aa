#!/usr/bin/env bash
# Nsight Compute over chosen kernels of the tune workbench, on the device
# machine after `bash scripts/device_cuda.sh build`:
#   PROFILES="KxN|variant_name|M[|group size] ..." bash scripts/device_profile.sh
# with '_' for the spaces of the variant name (group 128 unless given), e.g.
# PROFILES="8192x28672|wgmma_T64_S8_streamk|64 8192x8192|gemv_M1_T2_W8_S2|1|32". For each profile i,
# $OUT/ncu-details.txt gets the full set's details page (clocks left alone, as
# METHOD.md asks) and $OUT/ncu-src-<i>.csv the per-SASS-instruction counters
# (stall samples by reason), for reading where the warps wait
# (bench/ncu_stalls.py sums them).
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
i=0
IFS=$'\n'
for profile in $(echo "${PROFILES:?}" | tr ' ' '\n' | sed 's/_/ /g'); do
  i=$((i + 1))
  IFS='|' read -r shape variant m group <<<"$profile"
  group=${group:-128}
  echo "== profile $i: $shape, $variant, M = $m, group $group" | tee -a "$OUT/ncu-details.txt"
  ncu --clock-control none --set full -k regex:gemm_wgmma\|gemv_mma --launch-count 1 -f -o "/tmp/prof-$i" \
    ./build-dev/bench/int4mm_tune_mma "$shape" "$variant" "$group" "$m" >/tmp/ncu-$i.log 2>&1 ||
    { tail -20 /tmp/ncu-$i.log; continue; }
  ncu -i "/tmp/prof-$i.ncu-rep" --page details >>"$OUT/ncu-details.txt" 2>&1
  ncu -i "/tmp/prof-$i.ncu-rep" --page source --print-source sass --csv >"$OUT/ncu-src-$i.csv" 2>&1
done
