#!/usr/bin/env bash
# v29 call 1 (written in the twenty-ninth session, which was lent no
# device: for the next one). Two trials, off by default, against the same
# binary without them (main's dispatch):
#   staged8  (INT4MM_GEMV8_STAGED=1) M = 2..8 where 2-tile blocks fit one
#            wave of one per SM (14336 x 4096, 4096 x 4096): 16-warp 2-tile
#            blocks with A staged, one m-tile, folded (tiles one after
#            another) or scaled (INT4MM_GEMV8_FOLDED=0)
#   folded4  (INT4MM_GEMV16_FOLDED4=1) M = 9..16 where 4-tile 8-warp blocks
#            take more than a wave of one per SM (8192 x 28672, 4096 x
#            14336): folded with the accumulators in shared memory instead
#            of scaled
#   1. the gemv_mma tests of the new shapes
#   2. int4mm bench A/B, two rounds in alternation, both dtypes, on the
#      shapes each trial moves
#   3. the workbench (bf16, group 128): M = 2..8 on 14336 x 4096 and 4096 x
#      4096; M = 16 on the four target shapes (the folded 4-tile kernels
#      with 8, 12 and 16 warps); group 64 at M = 1, 2, 4 (folded against
#      scaled since v28)
#   4. memcheck and racecheck on the new shapes
# Carry: build/carry.tar.xz: new/ (int4mm, test_cuda, int4mm_tune_mma).
source docs/results/h100-v23-lib.sh  # unpacks the carry into /tmp/bin; $R, pack
tests gemv 150 '*Folded8Staged*:*Folded16Staged*:*Scaled8Group128*:*FoldedBias*:*OutOfRange*'
N=/tmp/bin/new
variant_cmd() {
  case $1 in
    off) echo $N/int4mm ;;
    st8) echo env INT4MM_GEMV8_STAGED=1 $N/int4mm ;;
    sc8) echo env INT4MM_GEMV8_STAGED=1 INT4MM_GEMV8_FOLDED=0 $N/int4mm ;;
    fo4) echo env INT4MM_GEMV16_FOLDED4=1 $N/int4mm ;;
  esac
}
S=14336x4096,4096x4096
ab m8 off st8 2,3,4,5,6,8 bf16,fp16
ab s8 st8 sc8 2,3,4,5,6,8 bf16,fp16
S=8192x28672,4096x14336
ab m16 off fo4 1,12,16 bf16,fp16
timeout 150 $N/int4mm_tune_mma 14336x4096,4096x4096 'gemv|dispatch' 128 2,3,4,6,8 > $R/tune-m8.txt 2>&1
echo "== workbench M 2..8 exit $? ($SECONDS s)"; pack
timeout 150 $N/int4mm_tune_mma 8192x28672,4096x14336,8192x8192,28672x8192 'gemv|dispatch' 128 16 \
  > $R/tune-m16.txt 2>&1
echo "== workbench M 16 exit $? ($SECONDS s)"; pack
timeout 120 $N/int4mm_tune_mma 8192x28672,8192x8192,14336x4096 'gemv|dispatch' 64 1,2,4 > $R/tune-g64.txt 2>&1
echo "== workbench group 64 exit $? ($SECONDS s)"; pack
tests memcheck 150 '*Folded8Staged*k4224*:*Folded16Staged*t4*:*Scaled8Group128*t2_s2_w16*k4224*' \
  'compute-sanitizer --tool memcheck --error-exitcode 9'
tests racecheck 90 '*Folded8Staged*k4224*bfloat16*:*Folded16Staged*t4*bfloat16*:*Scaled8Group128*t2_s2_w16*k4224*bfloat16*' \
  'compute-sanitizer --tool racecheck --error-exitcode 9'
