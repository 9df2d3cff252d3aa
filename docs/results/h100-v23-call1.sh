#!/usr/bin/env bash
# v23 calls 1 and 2 (docs/cuda.md, v23): gemv_mma's chunks through a ring
# per warp in shared memory (kRing). Call 1 filled it with cp.async (each
# lane its own 16 bytes) and read A directly; call 2 (this script) fills it
# with bulk copies by the TMA unit, A's rows included, on an mbarrier per
# slot: `docs/results/v23-ring.patch`, not on main (it lost 0.63-0.91x).
# One build for sm_90a of main with that patch applied (`git apply
# docs/results/v23-ring.patch`, against main before v23), carried in
# build/carry.tar.xz (`bash docs/results/h100-v23-build.sh`):
# new/{int4mm,test_cuda,int4mm_tune_mma}. Dispatch takes the ring unless
# INT4MM_GEMV_RING=0, so the A/B runs one binary twice ("off" with it set,
# "ring" without). In the order a short call should cut it:
#   1. the ring's tests, the gemv shape errors, the chained and public
#      tests; memcheck and racecheck of the ring cases;
#   2. A/B at M = 1 / 2 / 4 on the six shapes: off, ring, ring, off (bf16,
#      fp16);
#   3. the workbench: every 1- and 2-tile gemv at M = 1 on the four shapes
#      below 90% of copy, ring depths 3 / 4 against the direct loads; the
#      scaled ring variants at groups 64 and 32;
#   4. the workbench at M = 4 (1- and 2-tile shapes);
#   5. v22's unexplained gap on 4096 x 4096 at M = 1: the bench with M =
#      1,2,4 and with the table's eleven M, one after the other, twice
#      (call 1 ran it with the ring on: 6.44-6.52 us both ways).
# Outputs in $OUT/r, packed into $OUT/r.tgz after each stage.
variant_cmd() { echo "env INT4MM_GEMV_RING=$([ $1 = off ] && echo 0 || echo 1) /tmp/bin/new/int4mm"; }
source docs/results/h100-v23-lib.sh
B=/tmp/bin/new
tune() {  # log shapes filter group M
  timeout 120 $B/int4mm_tune_mma $2 "$3" $4 $5 > $R/tune-$1.txt 2>&1
  echo "tune $1 exit $? ($SECONDS s)"; cat $R/tune-$1.txt; pack
}

tests test_ring 60 '*Ring*:*GemvShapeOutOfRange*:CudaKernels.*Chained*:CudaKernels.Public*'
tests memcheck 120 '*Ring*:CudaKernels.GemvChained*' 'compute-sanitizer --tool memcheck --error-exitcode 9'
tests racecheck 60 '*Ring*m1_n100*:*Ring*m3_n40*bfloat16*' 'compute-sanitizer --tool racecheck --error-exitcode 9'
ab narrow off ring 1,2,4 bf16,fp16
tune g128 4096x4096,14336x4096,4096x14336,8192x8192 'gemv M1 T1|gemv M1 T2 W8 S2 -- --|gemv M1 T2 W12' 128 1
tune g64 8192x28672,14336x4096 'gemv M1 T1 W8 S2|gemv M1 T2 W8 S2|gemv M1 T2 W8 S4 -- sc|gemv M1 T4 W8 S2 -- sc' 64 1
tune g32 8192x28672,14336x4096 'gemv M1 T1 W8 S2|gemv M1 T2 W8 S2' 32 1
tune m4 4096x4096,14336x4096,4096x14336,8192x8192 'gemv M1 T1 W12 S2|gemv M1 T1 W8 S2 -- --|gemv M1 T2' 128 4
mkdir -p $R/gap
for r in 1 2; do
  for ms in 1,2,4 1,2,4,8,16,32,64,128,256,1024,4096; do
    timeout 60 env INT4MM_GEMV_RING=0 $B/int4mm bench --backend cuda --shapes 4096x4096 --m $ms --dtype bf16 \
      --json $R/gap/m${#ms}-$r.json > $R/gap/m${#ms}-$r.txt 2>&1
    echo "gap M=$ms round $r exit $? ($SECONDS s)"
  done
done
echo "done ($SECONDS s)"; pack
