#!/usr/bin/env bash
# v31 call 1 (written in the thirty-second session, which no device was lent
# to): v31.0, the 16-row kernels with A staged prefetching a warp's next
# chunk (weights and scale/zero pairs) into L2, and v31.1, group 256 at
# M <= 4 in 1-tile 12-warp blocks (docs/results/v31-prefetch-g256.patch), in
# the order they matter:
#   1. int4mm bench A/B, two rounds: old (main) against new (main with the
#      patch) on the four M = 16 target shapes at M = 1 (the control: the
#      same kernels), 9 and 16, both dtypes
#   2. v31.1 against its switch (INT4MM_GEMV256_W12=0), group 256, M = 1, 2,
#      4, on the two shapes it moves
#   3. the whole CUDA suite of new; memcheck and racecheck on the new
#      kernels
#   4. pfw (v30.2: the weights prefetched alone, eight instructions a chunk)
#      against new (weights and pairs, two): is the pairs' latency what the
#      weights' prefetch alone would leave?
#   5. first (docs/results/v31-first.patch: the 8-warp blocks prefetch
#      their first chunk too, before the PDL wait) against new: a warp of
#      the 4-tile blocks has 4 chunks on 4096 x 14336, 8 on 8192 x 28672
#   6. pfall (the prefetch in every kernel with one chunk a warp,
#      docs/results/v31-pfall.patch) against new at M = 1, 4 (8), bf16,
#      groups 64 and 128: the latency-bound M = 1 kernels (v20's profile)
#   7. the tables of new; Nsight Compute on bf16 8192 x 28672 at M = 16
# Carry: build/carry.tar.xz from docs/results/h100-v31-build.sh: old/int4mm,
# pfw/int4mm, new/{int4mm,test_cuda}, pfall/int4mm, first/int4mm. An
# argument runs a part: "checks" (1-6) or "tables" (7); none, all of it.
source docs/results/h100-v23-lib.sh  # unpacks the carry into /tmp/bin; $R, pack
part=${1:-all}
N=/tmp/bin/new
variant_cmd() {
  case $1 in
    old) echo /tmp/bin/old/int4mm ;;
    pfw) echo /tmp/bin/pfw/int4mm ;;
    new) echo $N/int4mm ;;
    w12off) echo env INT4MM_GEMV256_W12=0 $N/int4mm ;;
    pfall) echo /tmp/bin/pfall/int4mm ;;
    first) echo /tmp/bin/first/int4mm ;;
  esac
}
if [ $part != tables ]; then
  S0=$S
  S=4096x14336,8192x28672,8192x8192,28672x8192
  ab pf old new 1,9,16 bf16,fp16
  S=4096x4096,14336x4096 G=256
  ab g256 w12off new 1,2,4 bf16,fp16
  S=$S0 G=128
  tests suite 200 '*'
  tests memcheck 150 '*Scaled16Group128*staged*k4*:*Folded16Staged*k4*:*Warps12Group256*' \
    'compute-sanitizer --tool memcheck --error-exitcode 9'
  tests racecheck 90 '*Scaled16Group128*t4_s2_w8_staged*k4224*bfloat16*:*Warps12Group256*k4608*_float16*' \
    'compute-sanitizer --tool racecheck --error-exitcode 9'
  S=4096x14336,8192x28672
  ab pfw pfw new 9,16 bf16,fp16
  ab first new first 1,9,16 bf16,fp16
  S=14336x4096,8192x8192,8192x28672 G=64
  ab pfall64 new pfall 1,4 bf16
  S=14336x4096,8192x8192,8192x28672,4096x4096 G=128
  ab pfall new pfall 1,4,8 bf16
  S=$S0
fi
[ $part = checks ] && exit 0
tables
gemv_profile bf16 8192x28672 16
