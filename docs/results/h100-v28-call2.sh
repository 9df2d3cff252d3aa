#!/usr/bin/env bash
# v28 call 2: main as committed (bf16's bias in the fold, the fold's sums
# from zero in the mma, A's copy without checks where whole, M = 9..16
# scaled but bf16 2-tile blocks folded) against main at v27 (old):
#   1. the whole CUDA suite; memcheck and racecheck on the new shapes
#   2. int4mm bench A/B, old against new, M = 1, 2, 4, 8, 16, group 128,
#      both dtypes, two rounds
#   3. new's tables: every M both dtypes, tinygemm at M <= 4, group sizes
# Carry: build/carry.tar.xz as in call 1, new/ rebuilt from this tree.
source docs/results/h100-v23-lib.sh  # unpacks the carry into /tmp/bin; $R, pack
tests suite 150 '*'
tests memcheck 60 '*Folded16Staged*m13_*:*FoldedBias*' 'compute-sanitizer --tool memcheck --error-exitcode 9'
tests racecheck 40 '*Folded16Staged*m13_*bfloat16*' 'compute-sanitizer --tool racecheck --error-exitcode 9'
variant_cmd() { echo /tmp/bin/$1/int4mm; }
ab k old new 1,2,4,8,16 bf16,fp16
tables
