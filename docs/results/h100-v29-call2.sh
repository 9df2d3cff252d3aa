#!/usr/bin/env bash
# v29 call 2: main as committed (M = 2..8 in 16-warp staged 2-tile blocks
# where they fit a wave, bf16 folded and fp16 scaled; group 64 folded at
# M <= 4 where it took scaled 2-tile blocks; v29.1 removed) against the
# call 1 binary with its trials off (old: main's dispatch at 8adcbf2):
#   1. the whole CUDA suite; memcheck and racecheck on the new dispatch
#   2. int4mm bench A/B, two rounds, both dtypes: each new rule against its
#      switch (INT4MM_GEMV8_STAGED=0, INT4MM_GEMV64_FOLDED=0), then old
#      against new at M = 1, 2, 4, 8, 16 on the six shapes
#   3. new's tables: every M both dtypes, tinygemm at M <= 4, group sizes
# Carry: build/carry.tar.xz: old/int4mm (call 1's new), new/ rebuilt.
# An argument runs a part: "checks" (1 and the rules' A/B), "tables" (the
# old/new A/B and 3); none, all of it.
source docs/results/h100-v23-lib.sh  # unpacks the carry into /tmp/bin; $R, pack
part=${1:-all}
if [ $part != tables ]; then
  tests suite 150 '*'
  tests memcheck 120 '*Folded8Staged*k4224*:*Scaled8Group128*t2_s2_w16*k4224*:*PublicApiDispatchesEveryM*' \
    'compute-sanitizer --tool memcheck --error-exitcode 9'
  tests racecheck 60 '*Folded8Staged*k4224*bfloat16*:*Scaled8Group128*t2_s2_w16*k4224*bfloat16*' \
    'compute-sanitizer --tool racecheck --error-exitcode 9'
fi
N=/tmp/bin/new
variant_cmd() {
  case $1 in
    old) echo /tmp/bin/old/int4mm ;;
    new) echo $N/int4mm ;;
    st8off) echo env INT4MM_GEMV8_STAGED=0 $N/int4mm ;;
    g64off) echo env INT4MM_GEMV64_FOLDED=0 $N/int4mm ;;
  esac
}
S0=$S
if [ $part != tables ]; then
  S=14336x4096,4096x4096
  ab m8 st8off new 2,3,4,5,6,8 bf16,fp16
  S=$S0 G=64
  ab g64 g64off new 1,2,4 bf16,fp16
  G=128
fi
if [ $part != checks ]; then
  ab k old new 1,2,4,8,16 bf16,fp16
  tables
fi
