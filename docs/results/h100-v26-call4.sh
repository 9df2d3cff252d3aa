#!/usr/bin/env bash
# v26 call 4, main as committed (v26.1: group 32's staged two-chunk blocks
# from M = 3 where 12-warp ones fit one wave):
#   1. the whole CUDA suite
#   2. int4mm bench A/B, old (v26.0) against new, group 32, bf16, M = 1..4
#   3. new's group-size table at M = 1, fp16, groups 32, 64, 128 in one run
# Carry: build/carry.tar.xz: old/int4mm (v26.0), new/ (int4mm, test_cuda).
source docs/results/h100-v23-lib.sh  # unpacks the carry into /tmp/bin; $R, pack
tests suite 240 '*'
mkdir -p $R/g32
for r in 1 2; do
  for v in old new; do
    timeout 60 /tmp/bin/$v/int4mm bench --backend cuda --shapes $S --m 1,2,3,4 --dtype bf16 --group-size 32 \
      --json $R/g32/$v-bf16-$r.json > $R/g32/$v-bf16-$r.txt 2>&1
    echo "g32: $v round $r exit $? ($SECONDS s)"
  done
done
python3 bench/ab_table.py $R/g32 --variants old,new --dtypes bf16 --rounds 2 | tee $R/ab-g32.txt; pack
for g in 32 64 128; do
  timeout 60 /tmp/bin/new/int4mm bench --backend cuda --shapes $S --m 1 --dtype fp16 --group-size $g \
    --json $R/groups-$g.json > $R/groups-$g.txt 2>&1
  echo "== group $g fp16 bench exit $? ($SECONDS s)"; pack
done
