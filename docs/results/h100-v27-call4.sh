#!/usr/bin/env bash
# v27 call 4, written but not run (two starts found no H100 and the
# time left was too little for another try): v27.3, the tree of
# docs/results/v27-w12-g256.patch (group 256's 12-warp 1-tile blocks where
# group 128's fit; deep weights keep 12-warp blocks from M = 3), against
# main at v27.2 (old), in dispatch:
#   1. the 12- and 16-warp gemv tests, memcheck on group 256's
#   2. group 128 A/B on 4096 x 4096 and 14336 x 4096, M = 1..4, both dtypes
#   3. group 256 A/B on the six shapes, M = 1, 2, 4, both dtypes
#   4. new's group 128 and 256 at M = 1 (bf16, one run each, same machine)
# Carry: build/carry.tar.xz: old/int4mm (v27.2), new/ (int4mm, test_cuda).
source docs/results/h100-v23-lib.sh  # unpacks the carry into /tmp/bin; $R, pack
tests w 120 '*Warps12*:*Warps16OneTile*'
tests memcheck 120 '*Warps12*g256*' 'compute-sanitizer --tool memcheck --error-exitcode 9'
variant_cmd() { echo /tmp/bin/$1/int4mm; }
S6=$S
S=4096x4096,14336x4096
ab g128 old new 1,2,3,4 bf16,fp16
S=$S6
gbench() {  # variant dtype round
  timeout 60 /tmp/bin/$1/int4mm bench --backend cuda --shapes $S --m 1,2,4 --dtype $2 --group-size 256 \
    --json $R/g256/$1-$2-$3.json > $R/g256/$1-$2-$3.txt 2>&1
  echo "g256: $1 $2 round $3 exit $? ($SECONDS s)"
}
mkdir -p $R/g256
for d in bf16 fp16; do gbench old $d 1; gbench new $d 1; gbench new $d 2; gbench old $d 2; done
python3 bench/ab_table.py $R/g256 --variants old,new --dtypes bf16,fp16 --rounds 2 | tee $R/ab-g256.txt; pack
for g in 128 256; do
  timeout 60 /tmp/bin/new/int4mm bench --backend cuda --shapes $S --m 1 --dtype bf16 --group-size $g \
    --json $R/groups-$g.json > $R/groups-$g.txt 2>&1
  echo "== group $g bench exit $? ($SECONDS s)"; pack
done
