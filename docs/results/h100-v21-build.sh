#!/usr/bin/env bash
# Builds the carry of docs/results/h100-v21-call1.sh on the dev machine (no
# GPU needed; about 5 minutes for the two on 2 cores): "new" is this
# checkout's HEAD, "w16" HEAD with docs/results/v22-w16.patch applied, each
# in its own git worktree under /tmp/v21-<variant>. Writes
# build/carry.tar.xz. Run from the repository root after
# `bash scripts/install_deps.sh`. The v21/v22 calls' other builds (s15, pdl,
# combo: 37fca37 with docs/results/v20-s15.patch and/or v21-pdl.patch, and
# w16pdl) are main itself since v22, or main + v22-w16.patch ("w16" here),
# so the call's `short`, `ab` and `final` modes need 37fca37's tree; a
# rerun of the tables is `h100-v21-call1.sh tables new`.
set -euo pipefail
source scripts/env.sh
root=$PWD
rm -rf /tmp/v21-carry && mkdir -p /tmp/v21-carry
for variant in new w16; do
  dir=/tmp/v21-$variant
  git worktree remove --force $dir 2>/dev/null || true
  git worktree add --detach $dir HEAD
  case $variant in
    w16) patches="v22-w16.patch" ;;
    *) patches="" ;;
  esac
  for p in $patches; do git -C $dir apply $root/docs/results/$p; done
  cmake -S $dir -B $dir/build -G Ninja -DCMAKE_BUILD_TYPE=Release -DINT4MM_TESTS=ON \
    -DINT4MM_CUDA_GENCODE="-gencode=arch=compute_90a,code=sm_90a" > /dev/null
  targets="int4mm_cli test_cuda"
  if [ $variant = new ]; then targets="$targets int4mm_tune_mma"; fi
  ninja -C $dir/build -j2 $targets
  mkdir -p /tmp/v21-carry/$variant
  cp $dir/build/tools/int4mm $dir/build/tests/cuda/test_cuda /tmp/v21-carry/$variant/
  if [ $variant = new ]; then cp $dir/build/bench/int4mm_tune_mma /tmp/v21-carry/new/; fi
done
tar -C /tmp/v21-carry -cJf build/carry.tar.xz new w16
ls -l build/carry.tar.xz
