#!/usr/bin/env bash
# v30 call 1: main with v30.0 (bf16 M = 9..16: folded 2-tile 8-warp blocks
# with A staged, two per SM, where 16-warp 2-tile blocks would take more
# than a wave and these fit one) and v30.1 (group 64, M <= 4: 12-warp 1-tile
# blocks with one chunk a warp instead of two):
#   1. the whole CUDA suite; memcheck and racecheck on the new kernels
#   2. int4mm bench A/B, two rounds: each new rule against its switch
#      (INT4MM_GEMV16_W8=0, INT4MM_GEMV64_X1=0), and v29.2's final group 64
#      rule against INT4MM_GEMV64_FOLDED=0 (v29's call 3, never run)
#   3. the tables: every M both dtypes, tinygemm at M <= 4, group sizes
#   4. Nsight Compute on M = 16, 8192 x 28672, bf16 against fp16 (the same
#      scaled 4-tile 8-warp blocks; bf16 1.173x M = 1, fp16 1.104x in v29)
# Carry: build/carry.tar.xz: new/{int4mm,test_cuda}.
source docs/results/h100-v23-lib.sh  # unpacks the carry into /tmp/bin; $R, pack
tests suite 200 '*'
tests memcheck 150 '*Folded16Staged*w8*:*Warps12Group64*:*GemvFoldedBiasWithPositiveActivations*' \
  'compute-sanitizer --tool memcheck --error-exitcode 9'
tests racecheck 90 '*Folded16Staged*w8*k4224*bfloat16*:*Warps12Group64*k4736*bfloat16*' \
  'compute-sanitizer --tool racecheck --error-exitcode 9'
N=/tmp/bin/new
variant_cmd() {
  case $1 in
    new) echo $N/int4mm ;;
    w8off) echo env INT4MM_GEMV16_W8=0 $N/int4mm ;;
    x1off) echo env INT4MM_GEMV64_X1=0 $N/int4mm ;;
    g64off) echo env INT4MM_GEMV64_FOLDED=0 $N/int4mm ;;
  esac
}
S0=$S
S=8192x8192,28672x8192,4096x8192
ab w8 w8off new 1,9,12,16 bf16
S=4096x4096,14336x4096 G=64
ab x1 x1off new 1,2,4 bf16,fp16
S=8192x8192,28672x8192,8192x28672
ab g64 g64off new 1,2,4 bf16,fp16
S=$S0 G=128
tables
echo "== ncu ($SECONDS s)"
for d in bf16 fp16; do
  [ $SECONDS -gt 520 ] && break
  timeout 60 ncu --clock-control none --set full -k regex:gemv_mma --launch-count 1 -f -o /tmp/prof-$d \
    $N/int4mm bench --backend cuda --shapes 8192x28672 --m 16 --dtype $d > /tmp/ncu-$d.log 2>&1 || tail -5 /tmp/ncu-$d.log
  ncu -i /tmp/prof-$d.ncu-rep --page details > $R/ncu-details-$d.txt 2>&1
  ncu -i /tmp/prof-$d.ncu-rep --page source --print-source sass --csv > $R/ncu-src-$d.csv 2>&1
  echo "ncu $d ($SECONDS s)"; pack
done
