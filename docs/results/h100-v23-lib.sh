# Sourced by the device-call scripts from v23 on (docs/results/h100-v*-call*.sh;
# v23's and v24's functions were moved here after their calls ran, as they
# ran): unpacks the carry (build/carry.tar.xz) into /tmp/bin, puts the
# outputs in $OUT/r and packs them into $OUT/r.tgz after each stage. A
# caller of bench or ab defines variant_cmd VARIANT, the int4mm command line
# of a variant (a binary, with its environment). $G, the group size bench
# passes, was each v29-v30 script's own copy of bench until v31 (v29's call
# 3 with a 60 s timeout); gemv_profile is v30's profile step (v31).
set -uo pipefail
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.sm,temperature.gpu --format=csv,noheader
python3 -c "import tarfile; tarfile.open('build/carry.tar.xz').extractall('/tmp/bin')"
R=$OUT/r; mkdir -p $R
pack() { (cd $OUT && tar czf r.tgz r); }
SECONDS=0
S=4096x4096,4096x14336,14336x4096,8192x8192,8192x28672,28672x8192

bench() {  # dir variant dtype round M (group $G, default 128: bench's own default)
  timeout 90 $(variant_cmd $2) bench --backend cuda --shapes $S --m $5 --dtype $3 --group-size ${G:-128} \
    --json $R/$1/$2-$3-$4.json > $R/$1/$2-$3-$4.txt 2>&1
  echo "$1: $2 $3 round $4 exit $? ($SECONDS s)"
}
ab() {  # dir base variant M dtypes: base, variant, variant, base per dtype, then the table
  mkdir -p $R/$1
  for d in ${5//,/ }; do
    bench $1 $2 $d 1 $4; bench $1 $3 $d 1 $4; bench $1 $3 $d 2 $4; bench $1 $2 $d 2 $4
  done
  python3 bench/ab_table.py $R/$1 --variants $2,$3 --dtypes $5 --rounds 2 | tee $R/ab-$1.txt; pack
}
tests() {  # log seconds filter [tool] [gtest flags]: new/test_cuda
  timeout $2 ${4:-} /tmp/bin/new/test_cuda --gtest_brief=1 --gtest_filter="$3" ${5:-} > $R/$1.log 2>&1
  echo "$1 exit $? ($SECONDS s):"; grep -E "^\[  (PASSED|FAILED|SKIPPED) |Failure|ERROR SUMMARY|RACECHECK SUMMARY" \
    $R/$1.log | head -20; pack
}
tables() {  # new's: every M both dtypes, tinygemm at M <= 4, group sizes
  local N=/tmp/bin/new
  for d in bf16 fp16; do
    timeout 100 $N/int4mm bench --backend cuda --shapes $S --m 1,2,4,8,16,32,64,128,256,1024,4096 --dtype $d \
      --json $R/bench-$d.json > $R/bench-$d.txt 2>&1; echo "== $d exit $? ($SECONDS s)"; pack
  done
  timeout 90 env PYTHONUNBUFFERED=1 python3 bench/torch_cuda_bench.py --shapes $S --m 1,2,4 \
    --json $R/torch.json > $R/torch.txt 2>&1; echo "torch exit $? ($SECONDS s)"; pack
  for g in 32 64 128 256; do
    timeout 60 $N/int4mm bench --backend cuda --shapes 8192x28672,8192x8192,14336x4096 --m 1,4096 --dtype bf16 \
      --group-size $g --json $R/group$g.json > $R/group$g.txt 2>&1; echo "group $g exit $? ($SECONDS s)"
  done; pack
}
gemv_profile() {  # dtype shape M: Nsight Compute on new's first gemv_mma launch (v30 on), if time is left
  echo "== ncu $1 $2 M=$3 ($SECONDS s)"
  [ $SECONDS -lt 520 ] || return 0
  timeout 60 ncu --clock-control none --set full -k regex:gemv_mma --launch-count 1 -f -o /tmp/prof-$1 \
    /tmp/bin/new/int4mm bench --backend cuda --shapes $2 --m $3 --dtype $1 > /tmp/ncu-$1.log 2>&1 || tail -5 /tmp/ncu-$1.log
  ncu -i /tmp/prof-$1.ncu-rep --page details > $R/ncu-details-$1.txt 2>&1
  ncu -i /tmp/prof-$1.ncu-rep --page source --print-source sass --csv > $R/ncu-src-$1.csv 2>&1
  echo "ncu $1 ($SECONDS s)"; pack
}
