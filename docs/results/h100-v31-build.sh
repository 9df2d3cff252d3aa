#!/usr/bin/env bash
# Builds the carry of docs/results/h100-v31-call1.sh on the dev machine (no
# GPU needed), sm_90a only, in a git worktree of HEAD at /tmp/v31-base,
# rebuilt incrementally per variant:
#   old   HEAD: int4mm
#   pfw   HEAD + docs/results/v30-prefetch.patch (v30.2: the weights'
#         prefetch alone, per lane): int4mm
#   new   HEAD + docs/results/v31-prefetch-g256.patch (v31.0 and v31.1):
#         int4mm, test_cuda
#   pfall new + docs/results/v31-pfall.patch (v31.0's prefetch in every
#         kernel with one chunk a warp): int4mm
#   first new + docs/results/v31-first.patch (the 8-warp 16-row kernels
#         prefetch their first chunk too, before the PDL wait): int4mm
# Writes build/carry.tar.xz (about 8 MB). Run from the repository root
# after `bash scripts/install_deps.sh`; about 12 minutes on 2 cores.
set -euo pipefail
source scripts/env.sh
root=$(pwd)
wt=/tmp/v31-base carry=/tmp/v31-carry
git worktree remove --force $wt 2>/dev/null || true
git worktree add --detach $wt HEAD
cmake -S $wt -B $wt/build -G Ninja -DCMAKE_BUILD_TYPE=Release -DINT4MM_TESTS=ON \
  -DINT4MM_CUDA_GENCODE="-gencode=arch=compute_90a,code=sm_90a" > /dev/null
rm -rf $carry && mkdir -p $carry/{old,pfw,new,pfall,first}
variant() {  # name "patches" targets...
  local name=$1 patches=$2; shift 2
  git -C $wt checkout -q -- .
  for p in $patches; do git -C $wt apply "$root/$p"; done
  ninja -C $wt/build -j2 "$@"
  for t in "$@"; do
    case $t in int4mm_cli) cp $wt/build/tools/int4mm $carry/$name/ ;; test_cuda) cp $wt/build/tests/cuda/test_cuda $carry/$name/ ;; esac
  done
}
variant old "" int4mm_cli
variant pfw docs/results/v30-prefetch.patch int4mm_cli
variant new docs/results/v31-prefetch-g256.patch int4mm_cli test_cuda
variant pfall "docs/results/v31-prefetch-g256.patch docs/results/v31-pfall.patch" int4mm_cli
variant first "docs/results/v31-prefetch-g256.patch docs/results/v31-first.patch" int4mm_cli
git -C $wt checkout -q -- .
tar -C $carry -cJf build/carry.tar.xz old pfw new pfall first
ls -l build/carry.tar.xz
