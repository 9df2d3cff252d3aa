#!/usr/bin/env bash
# v29 call 3: main as committed (group 64 folded at M <= 2 only where the
# rules give 4-step blocks, after call 2's fp16 0.99x at M = 4): the whole
# CUDA suite, then that rule against INT4MM_GEMV64_FOLDED=0, two rounds,
# both dtypes. Carry: build/carry.tar.xz: new/ rebuilt.
source docs/results/h100-v23-lib.sh  # unpacks the carry into /tmp/bin; $R, pack
tests suite 150 '*'
variant_cmd() {
  case $1 in
    new) echo /tmp/bin/new/int4mm ;;
    g64off) echo env INT4MM_GEMV64_FOLDED=0 /tmp/bin/new/int4mm ;;
  esac
}
S=8192x8192,28672x8192,8192x28672 G=64
ab g64 g64off new 1,2,4 bf16,fp16
