#!/usr/bin/env bash
# v27 call 3: main as committed (whole chunks for groups 64-256; M = 9..16
# through gemv_mma for group 128 with A staged; v27's M <= 4 rules for group
# 128) against main at v26 (old):
#   1. the whole CUDA suite; memcheck and racecheck on the new shapes
#   2. int4mm bench A/B, old against new, M = 1, 2, 4, 8, 16, group 128,
#      both dtypes, two rounds; groups 32 and 64 at M = 1, 4 (bf16)
#   3. new's tables: every M both dtypes, tinygemm at M <= 4, group sizes
# Carry: build/carry.tar.xz as in call 1, new/ rebuilt from this tree.
source docs/results/h100-v23-lib.sh  # unpacks the carry into /tmp/bin; $R, pack
eval "$(sed -n '/^variant_cmd()/,/^}/p; /^gb()/,/^}/p; /^gab()/,/^}/p' docs/results/h100-v27-call1.sh)"
tests suite 200 '*'
tests memcheck 150 '*Warps16OneTile*:*Scaled16Group128*t4_s2_w8_*:*OddShapes*m13_*g32*:*TwoBuffers*m4_*' \
  'compute-sanitizer --tool memcheck --error-exitcode 9'
tests racecheck 90 '*Warps16OneTile*k4736*bfloat16*:*Scaled16Group128*t4_s2_w8_*m13_*bfloat16*' \
  'compute-sanitizer --tool racecheck --error-exitcode 9'
variant_cmd() { echo /tmp/bin/$1/int4mm; }
ab k old new 1,2,4,8,16 bf16,fp16
gab 32 old new 1,4; gab 64 old new 1,4
tables
