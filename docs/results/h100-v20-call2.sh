#!/usr/bin/env bash
# v20 call 2 (docs/cuda.md, v20; planned, not run: no machine came): three
# builds for sm_90a carried in build/carry.tar.xz: "base" (v19, 31f0313),
# "new" (v20.1, main from 4f950d3 on: the batched finisher for one half
# only), "s15" (new with docs/results/v20-s15.patch applied: 15 stages
# instead of 12 in gemm_wgmma_ws at 64 rows). Layout of the carry:
# new/{int4mm,test_cuda,int4mm_tune_mma}, base/int4mm, s15/{int4mm,test_cuda}.
#   1. s15's wgmma tests and memcheck of its 64-row stream-K kernels;
#   2. the A/B at M = 33 / 48 / 64 on the six shapes (bf16, fp16;
#      base new s15, then s15 new base);
#   3. new's tables (bench at every M, bf16 and fp16), tinygemm at M <= 4,
#      group sizes, and the whole CUDA suite;
#   4. the workbench on 4096 x 4096 at M = 64 (1.32x cuBLAS, 2x needs 7 us).
set -uo pipefail
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.sm,temperature.gpu --format=csv,noheader
python3 -c "import tarfile; tarfile.open('build/carry.tar.xz').extractall('/tmp/bin')"
R=$OUT/r; mkdir -p $R
pack() { (cd $OUT && tar czf r.tgz r); }
SECONDS=0

T=/tmp/bin/s15/test_cuda
timeout 150 $T --gtest_brief=1 --gtest_filter='*Wgmma*:CudaKernels.Public*' > $R/test_wgmma.log 2>&1
echo "test_cuda (s15) wgmma exit $? ($SECONDS s):"; grep -E "^\[  (PASSED|FAILED|SKIPPED) |tests ran|Failure" $R/test_wgmma.log | head -20
timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 $T --gtest_brief=1 \
  --gtest_filter='OddShapes/WgmmaConfigs.MatchOracle/t64_streamk*:CudaKernels.Public*' > $R/memcheck.log 2>&1
echo "memcheck exit $? ($SECONDS s)"; grep -E "PASSED|FAILED|ERROR SUMMARY" $R/memcheck.log; pack

S=4096x4096,4096x14336,14336x4096,8192x8192,8192x28672,28672x8192
bench() {  # variant dtype round
  timeout 60 /tmp/bin/$1/int4mm bench --backend cuda --shapes $S --m 33,48,64 --dtype $2 \
    --json $R/$1-$2-$3.json > $R/$1-$2-$3.txt 2>&1; echo "$1 $2 round $3 exit $? ($SECONDS s)"
}
for d in bf16 fp16; do
  for v in base new s15; do bench $v $d 1; done
  for v in s15 new base; do bench $v $d 2; done
done
python3 bench/ab_table.py $R --variants base,new,s15 --dtypes bf16,fp16 --rounds 2
pack

N=/tmp/bin/new
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
timeout 200 $N/test_cuda --gtest_brief=1 > $R/test_all.log 2>&1
echo "test_cuda (new, all) exit $? ($SECONDS s):"; grep -E "^\[  (PASSED|FAILED|SKIPPED) |tests ran|Failure" $R/test_all.log | head -20
timeout 30 $N/int4mm selftest 2>&1 | tail -3
timeout 120 /tmp/bin/new/int4mm_tune_mma 4096x4096 '' 128 64 > $R/tune-4096-m64.txt 2>&1
echo "tune 4096x4096 M=64 exit $? ($SECONDS s)"; cat $R/tune-4096-m64.txt
echo "done ($SECONDS s)"; pack
