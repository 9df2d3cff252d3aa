#!/usr/bin/env bash
# v21 call 1 (docs/cuda.md, v21; not run: no machine came in the
# twenty-first session). Four builds for sm_90a carried in
# build/carry.tar.xz (xz, about 11 MB): "new" (main), "s15" (main + `git
# apply docs/results/v20-s15.patch`: 15 stages instead of 12 in
# gemm_wgmma_ws at 64 rows), "pdl" (main + `git apply
# docs/results/v21-pdl.patch`: gemv_mma's PDL rule of v21.0), "combo" (both
# patches, for the tables: `... tables combo`). Layout:
# new/{int4mm,test_cuda,int4mm_tune_mma}, s15/{int4mm,test_cuda},
# pdl/{int4mm,test_cuda}, combo/{int4mm,test_cuda}. In the order a short
# call should cut it:
#   1. s15's wgmma tests and memcheck of its 64-row stream-K kernels; pdl's
#      public tests;
#   2. A/B at M = 33 / 48 / 64 on the six shapes: new, s15, s15, new (bf16, fp16);
#   3. A/B at M = 1 / 2 / 4 / 8 / 16: new, pdl, pdl, new (bf16, fp16), and
#      at groups 64 and 256, M = 1 and 8 (bf16);
#   4. new's tables (every M, bf16 and fp16), tinygemm at M <= 4, group
#      sizes, the whole CUDA suite;
#   5. the workbench on 4096 x 4096 at M = 64.
# `bash h100-v21-call1.sh ab` runs stages 1-3, `... tables` stages 4-5 (the
# first try of the whole ran into a machine taken back mid-call, and such a
# call returns nothing); `... short` stages 1-3 cut to what decides.
# The twenty-second session added v22.0 (docs/results/v22-w16.patch:
# gemv_mma blocks of 16 warps, 1 tile, 2 per SM, where v19 runs 12) after
# the narrow A/B: its tests, its A/B (build "w16", main + that patch:
# w16/{int4mm,test_cuda}) and the workbench's 16-warp variants
# (new/int4mm_tune_mma rebuilt from main + that session's bench/tune_mma.cu).
# `... final` (v22's second call, after the first settled v20.2 and v21.0):
# sanitizers on combo, "w16pdl" (combo + docs/results/v22-w16.patch) against
# combo, then `tables combo`.
# Since v22, s15, pdl and combo are main itself (h100-v21-build.sh now
# builds "new" and "w16" only): the modes above ran in v22's calls on
# 37fca37's builds, and a rerun of the tables is `... tables new`.
# Outputs in $OUT/r, packed into $OUT/r.tgz.
set -uo pipefail
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.sm,temperature.gpu --format=csv,noheader
python3 -c "import tarfile; tarfile.open('build/carry.tar.xz').extractall('/tmp/bin')"
R=$OUT/r; mkdir -p $R
pack() { (cd $OUT && tar czf r.tgz r); }
SECONDS=0
S=4096x4096,4096x14336,14336x4096,8192x8192,8192x28672,28672x8192

bench() {  # dir variant dtype round M group
  timeout 60 /tmp/bin/$2/int4mm bench --backend cuda --shapes $S --m $5 --dtype $3 --group-size $6 \
    --json $R/$1/$2-$3-$4.json > $R/$1/$2-$3-$4.txt 2>&1; echo "$1: $2 $3 round $4 exit $? ($SECONDS s)"
}
ab() {  # dir base variant M dtypes [group]: base, variant, variant, base per dtype, then the table
  mkdir -p $R/$1
  for d in ${5//,/ }; do
    bench $1 $2 $d 1 $4 ${6:-128}; bench $1 $3 $d 1 $4 ${6:-128}
    bench $1 $3 $d 2 $4 ${6:-128}; bench $1 $2 $d 2 $4 ${6:-128}
  done
  python3 bench/ab_table.py $R/$1 --variants $2,$3 --dtypes $5 --rounds 2 | tee $R/ab-$1.txt; pack
}
tests() {  # log variant seconds filter
  timeout $3 /tmp/bin/$2/test_cuda --gtest_brief=1 --gtest_filter="$4" > $R/$1.log 2>&1
  echo "$1 ($2) exit $? ($SECONDS s):"; grep -E "^\[  (PASSED|FAILED|SKIPPED) |Failure" $R/$1.log | head -20
}

w16() {  # v22's workbench: 16-warp 1-tile blocks, 2 per SM, against the 12-warp ones dispatch runs;
          # and group 64's gemv variants where it misses its target (8192 x 28672, M = 1: 1.16x group 128)
  timeout 90 /tmp/bin/new/int4mm_tune_mma 4096x4096,14336x4096 'gemv M1 T1' 128 1,4 > $R/tune-w16.txt 2>&1
  echo "tune w16 exit $? ($SECONDS s)"; cat $R/tune-w16.txt; pack
  timeout 90 /tmp/bin/new/int4mm_tune_mma 8192x28672 'gemv M1' 64 1 > $R/tune-g64.txt 2>&1
  echo "tune g64 exit $? ($SECONDS s)"; cat $R/tune-g64.txt; pack
}

tables() {  # variant: every M both dtypes, tinygemm at M <= 4, group sizes
  local N=/tmp/bin/$1
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
suite() {  # variant: the whole CUDA suite and the selftest
  tests test_all $1 200 '*'
  timeout 30 /tmp/bin/$1/int4mm selftest 2>&1 | tail -3; pack
}

case ${1:-ab} in
  short)  # stages 1-3 cut to what decides, for a session's last minutes
    tests test_wgmma s15 90 '*Wgmma*t64*:CudaKernels.Public*'
    tests test_pdl pdl 60 'CudaKernels.*:*Warps12*'; pack
    ab narrow new pdl 1,2,4,8 bf16,fp16
    tests test_w16 w16 60 '*Warps12*:CudaKernels.*Chained*'; ab w16 new w16 1,2,4 bf16,fp16
    w16
    ab g64 new pdl 1,8 bf16 64; ab g256 new pdl 1,8 bf16 256  # the other grids v21.0 moves
    ab wide new s15 48,64 bf16,fp16
    exit ;;
  ab)
    tests test_wgmma s15 150 '*Wgmma*:CudaKernels.Public*'
    timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 /tmp/bin/s15/test_cuda --gtest_brief=1 \
      --gtest_filter='OddShapes/WgmmaConfigs.MatchOracle/t64_streamk*:CudaKernels.Public*' > $R/memcheck.log 2>&1
    echo "memcheck (s15) exit $? ($SECONDS s)"; grep -E "PASSED|FAILED|ERROR SUMMARY" $R/memcheck.log
    tests test_pdl pdl 60 'CudaKernels.*:*Gemv*'; pack
    ab wide new s15 33,48,64 bf16,fp16
    ab narrow new pdl 1,2,4,8,16 bf16,fp16
    tests test_w16 w16 60 '*Warps12*:CudaKernels.*Chained*'; ab w16 new w16 1,2,4 bf16,fp16
    w16
    ab g64 new pdl 1,8 bf16 64; ab g256 new pdl 1,8 bf16 256
    exit ;;
  final)  # v22's second call: sanitizers on "combo" (main + both patches, as main became after the
          # first), its tables, w16 over it ("w16pdl": combo + v22-w16.patch), its whole suite
    timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 /tmp/bin/combo/test_cuda --gtest_brief=1 \
      --gtest_filter='CudaKernels.GemvChained*:*Warps12*:OddShapes/WgmmaConfigs.MatchOracle/t64_streamk*' \
      > $R/memcheck.log 2>&1
    echo "memcheck (combo) exit $? ($SECONDS s)"; grep -E "PASSED|FAILED|ERROR SUMMARY" $R/memcheck.log
    timeout 60 compute-sanitizer --tool racecheck --error-exitcode 9 /tmp/bin/combo/test_cuda --gtest_brief=1 \
      --gtest_filter='*Warps12*m1_n100*:OddShapes/WgmmaConfigs.MatchOracle/t64_streamk_m70_*bfloat16_g128' \
      > $R/racecheck.log 2>&1
    echo "racecheck (combo) exit $? ($SECONDS s)"; grep -E "PASSED|FAILED|RACECHECK SUMMARY" $R/racecheck.log
    tables combo
    tests test_w16pdl w16pdl 60 '*Warps12*:CudaKernels.*Chained*'; pack
    ab w16pdl combo w16pdl 1,2,4 bf16,fp16
    suite combo
    echo "done ($SECONDS s)"; pack
    exit ;;
esac

tables ${2:-new}
suite ${2:-new}
timeout 120 /tmp/bin/new/int4mm_tune_mma 4096x4096 '' 128 64 > $R/tune-4096-m64.txt 2>&1
echo "tune 4096x4096 M=64 exit $? ($SECONDS s)"; cat $R/tune-4096-m64.txt
echo "done ($SECONDS s)"; pack

