#!/usr/bin/env bash
# v27 call 2 (same carry as call 1): what call 1's script bug left out, and
#   1. the whole CUDA suite; memcheck and racecheck on the gemv_mma tests
#   2. groups 32 and 64 at M = 1, 4 (old against new), group 64 at M = 16
#      (new with INT4MM_GEMV16=0 against its default)
#   3. the workbench at M = 1 and 4, group 128, old against new: which
#      shapes lost at M <= 4 in call 1 (8192 x 28672 bf16 0.97x)
#   4. new's group-size table at M = 1, bf16
source docs/results/h100-v23-lib.sh  # unpacks the carry into /tmp/bin; $R, pack
eval "$(sed -n '/^tune()/,/^}/p; /^variant_cmd()/,/^}/p; /^gb()/,/^}/p; /^gab()/,/^}/p' docs/results/h100-v27-call1.sh)"
tests suite 240 '*'
tests memcheck 200 '*GemvShapes*m13_*:*TwoBuffers*m4_*:*Warps12*k4736*' \
  'compute-sanitizer --tool memcheck --error-exitcode 9'
tests racecheck 120 '*Scaled16Group128*m13_*:*TwoBuffers*m3_n40*bfloat16*' \
  'compute-sanitizer --tool racecheck --error-exitcode 9'
gab 32 old new 1,4; gab 64 old new 1,4; gab 64 new g16 16 -m16
tune old 128 gemv 1,4; tune new 128 gemv 1,4
for g in 32 64 128 256; do
  timeout 60 /tmp/bin/new/int4mm bench --backend cuda --shapes $S --m 1 --dtype bf16 --group-size $g \
    --json $R/groups-$g.json > $R/groups-$g.txt 2>&1
  echo "== group $g bench exit $? ($SECONDS s)"; pack
done
