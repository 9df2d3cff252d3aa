#!/usr/bin/env bash
# (Superseded by docs/results/h100-v31-call1.sh, with v30.2 as its pfw.)
# v30 call 2 (written in the thirty-first session, not run: no device was
# lent after call 1): v30.2, the 16-row kernels with A staged prefetching a
# warp's next chunk of weights into L2 (docs/results/v30-prefetch.patch),
# against main (old):
#   1. int4mm bench A/B, two rounds: old against pf with v30.0's rule off
#      on both (INT4MM_GEMV16_W8=0: the prefetch alone, six shapes, M = 1,
#      9, 12, 16, both dtypes); new against pfall (the prefetch in every
#      one-chunk-a-warp kernel: the patch with kPrefetchNext = kBuffers ==
#      1) at M = 1, 2, 4, 8
#   2. the whole CUDA suite of the patched build; memcheck and racecheck on
#      the 16-row kernels; v30.0's rule against its switch with the prefetch
#   3. the tables (every M both dtypes, tinygemm at M <= 4, group sizes)
#   4. Nsight Compute on bf16 8192 x 28672 at M = 16 (call 1's profile,
#      with the prefetch)
# Carry: build/carry.tar.xz: old/int4mm (main), new/{int4mm,test_cuda}
# (main with the patch), pfall/int4mm. An argument runs a part: "checks"
# (1 and 2) or "tables" (3 and 4); none, all of it.
source docs/results/h100-v23-lib.sh  # unpacks the carry into /tmp/bin; $R, pack
part=${1:-all}
N=/tmp/bin/new
variant_cmd() {
  case $1 in
    old) echo env INT4MM_GEMV16_W8=0 /tmp/bin/old/int4mm ;;
    pf) echo env INT4MM_GEMV16_W8=0 $N/int4mm ;;
    new) echo $N/int4mm ;;
    pfall) echo /tmp/bin/pfall/int4mm ;;
  esac
}
if [ $part != tables ]; then
  S0=$S
  ab pf old pf 1,9,12,16 bf16,fp16
  ab pfall new pfall 1,2,4,8 bf16,fp16
  tests suite 200 '*'
  tests memcheck 150 '*Folded16Staged*:*Scaled16Group128*staged*:*GemvFoldedBiasWithPositiveActivations*' \
    'compute-sanitizer --tool memcheck --error-exitcode 9'
  tests racecheck 90 '*Folded16Staged*k4224*bfloat16*:*Scaled16Group128*staged*k4224*float16*' \
    'compute-sanitizer --tool racecheck --error-exitcode 9'
  S=8192x8192,4096x8192,28672x8192
  ab w8 pf new 1,9,12,16 bf16
  S=$S0
fi
[ $part = checks ] && exit 0
tables
gemv_profile bf16 8192x28672 16
