#!/usr/bin/env bash
# v20 call 1 (docs/cuda.md, v20): branch fixup-batch ("new": gemm_wgmma_ws's
# stream-K finisher reads 2-3 parts at once up to 64 tokens) against main
# ("base"), both built on the dev machine for sm_90a and carried in
# build/carry.tar.xz (new/{int4mm,test_cuda,int4mm_tune_mma},
# base/{int4mm,int4mm_tune_mma}). In the order a short call should cut it:
#   1. the wgmma tests, memcheck and racecheck of the stream-K kernels;
#   2. the A/B at M = 48 / 64 (bf16, fp16; base, new, new, base);
#   3. an nsys timeline of 14336 x 4096 at M = 64 (the stream-K grid's memset);
#   4. the workbench's 64-row grids on 14336 x 4096, base and new;
#   5. Nsight Compute on 14336 x 4096 at M = 1 (gemv_mma's 12-warp blocks).
# Outputs in $OUT/r, packed into $OUT/r.tgz after each stage.
set -uo pipefail
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.sm,temperature.gpu --format=csv,noheader
python3 -c "import tarfile; tarfile.open('build/carry.tar.xz').extractall('/tmp/bin')"
N=/tmp/bin/new; B=/tmp/bin/base; T=$N/test_cuda; R=$OUT/r; mkdir -p $R
pack() { (cd $OUT && tar czf r.tgz r); }
SECONDS=0

timeout 150 $T --gtest_brief=1 --gtest_filter='*Wgmma*:CudaKernels.Public*' > $R/test_wgmma.log 2>&1
echo "test_cuda wgmma exit $? ($SECONDS s):"; grep -E "^\[  (PASSED|FAILED|SKIPPED) |tests ran|Failure" $R/test_wgmma.log | head -20
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 $T --gtest_brief=1 \
  --gtest_filter='OddShapes/WgmmaConfigs.MatchOracle/t64_streamk*:OddShapes/WgmmaWideConfigs.MatchOracle/t64_streamk*:OddShapes/WgmmaConfigs.MatchOracle/t32_streamk*bfloat16_g128' \
  > $R/memcheck.log 2>&1
echo "memcheck exit $? ($SECONDS s)"; grep -E "PASSED|FAILED|ERROR SUMMARY" $R/memcheck.log
timeout 40 compute-sanitizer --tool racecheck --error-exitcode 9 $T --gtest_brief=1 \
  --gtest_filter='OddShapes/WgmmaConfigs.MatchOracle/t64_streamk_m70_n300*bfloat16*:OddShapes/WgmmaWideConfigs.MatchOracle/t64_streamk_m64_*bfloat16*' \
  > $R/racecheck.log 2>&1
echo "racecheck exit $? ($SECONDS s)"; grep -E "PASSED|FAILED|RACECHECK SUMMARY" $R/racecheck.log; pack

S=14336x4096,28672x8192,8192x28672,8192x8192,4096x4096
bench() {  # variant dtype round
  local bin=$N; [ "$1" = base ] && bin=$B
  timeout 60 $bin/int4mm bench --backend cuda --shapes $S --m 48,64 --dtype $2 \
    --json $R/$1-$2-$3.json > $R/$1-$2-$3.txt 2>&1; echo "$1 $2 round $3 exit $? ($SECONDS s)"
}
for d in bf16 fp16; do bench base $d 1; bench new $d 1; bench new $d 2; bench base $d 2; done
python3 - "$R" <<'EOF'
import json, sys, collections
r = sys.argv[1]
def dispatched(path):  # (k, n, m) -> (kernel, us): the first record after cublas_dense
    out, after = {}, False
    for x in json.load(open(path))["records"]:
        key = (x["k"], x["n"], x["m"])
        if x["kernel"] == "cublas_dense":
            after, cublas = True, x["time_us"]
        elif after and key not in out:
            out[key] = (x["kernel"], x["time_us"], cublas)
    return out
for d in ("bf16", "fp16"):
    runs = {(v, i): dispatched(f"{r}/{v}-{d}-{i}.json") for v in ("base", "new") for i in (1, 2)}
    for key in sorted(runs[("base", 1)]):
        row = f"{d} {key[0]}x{key[1]} M={key[2]}: {runs[('base', 1)][key][0]}"
        for i in (1, 2):
            b, n = runs[("base", i)].get(key), runs[("new", i)].get(key)
            if b and n:
                row += f" | r{i} base {b[1]:6.2f} new {n[1]:6.2f} ({b[1] / n[1]:.3f}x) cublas {n[2]:6.2f} ({n[2] / n[1]:.2f}x)"
        print(row)
EOF
pack

if command -v nsys > /dev/null; then
  timeout 90 nsys profile --trace=cuda --cuda-graph-trace=node -f true -o /tmp/m64 \
    $N/int4mm bench --backend cuda --shapes 14336x4096 --m 64 > /tmp/nsys.log 2>&1
  echo "nsys exit $? ($SECONDS s)"; tail -3 /tmp/nsys.log
  timeout 60 nsys stats --report cuda_gpu_trace --format csv -o $R/nsys-m64 /tmp/m64.nsys-rep > /dev/null 2>&1
  echo "nsys stats exit $?"; ls $R | grep nsys
  grep -iE "memset|gemm_wgmma" $R/nsys-m64*.csv | tail -12 | cut -c1-220
else
  echo "no nsys here"
fi
pack

for v in base new; do
  bin=$N; [ $v = base ] && bin=$B
  timeout 100 $bin/int4mm_tune_mma 14336x4096 wgmma 128 64 > $R/tune-m64-$v.txt 2>&1
  echo "tune M=64 $v exit $? ($SECONDS s)"; cat $R/tune-m64-$v.txt
done
pack

echo "== profile m1: 14336x4096, bf16, group 128, M = 1" | tee -a $R/ncu.txt
timeout 60 ncu --clock-control none --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats \
  --section SchedulerStats --section Occupancy --section LaunchStats -k regex:gemv_mma --launch-count 1 -f -o /tmp/prof-m1 \
  $N/int4mm bench --backend cuda --shapes 14336x4096 --m 1 --repeats 1 > /tmp/ncu-m1.log 2>&1 || tail -5 /tmp/ncu-m1.log
ncu -i /tmp/prof-m1.ncu-rep --page details >> $R/ncu.txt 2>&1
grep -E "gemv_|Duration|DRAM Throughput|Memory Throughput|Issue Slots Busy|L2 Hit Rate|Eligible Warps|No Eligible|Achieved Active|Waves Per SM|Grid Size|Block Size|Registers Per|Stall" $R/ncu.txt | head -40
echo "done ($SECONDS s)"; pack
