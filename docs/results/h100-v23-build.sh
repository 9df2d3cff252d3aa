#!/usr/bin/env bash
# Builds the carry of docs/results/h100-v23-call*.sh on the dev machine (no
# GPU needed), for sm_90a: "new" is this checkout's working tree (build/:
# CLI, CUDA tests, workbench), "base" (`... base`: calls 3 and 4) the CLI of
# HEAD in a git worktree at /tmp/v23-base. Writes build/carry.tar.xz. Run
# from the repository root after `bash scripts/install_deps.sh`. Calls 1
# and 2 ran this checkout with docs/results/v23-ring.patch applied.
set -euo pipefail
source scripts/env.sh
gencode="-gencode=arch=compute_90a,code=sm_90a"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DINT4MM_TESTS=ON -DINT4MM_CUDA_GENCODE="$gencode" > /dev/null
ninja -C build -j2 int4mm_cli test_cuda int4mm_tune_mma
rm -rf /tmp/v23-carry && mkdir -p /tmp/v23-carry/new
cp build/tools/int4mm build/tests/cuda/test_cuda build/bench/int4mm_tune_mma /tmp/v23-carry/new/
variants=new
if [ "${1:-}" = base ]; then
  git worktree remove --force /tmp/v23-base 2>/dev/null || true
  git worktree add --detach /tmp/v23-base HEAD
  cmake -S /tmp/v23-base -B /tmp/v23-base/build -G Ninja -DCMAKE_BUILD_TYPE=Release -DINT4MM_TESTS=ON \
    -DINT4MM_CUDA_GENCODE="$gencode" > /dev/null
  ninja -C /tmp/v23-base/build -j2 int4mm_cli
  mkdir -p /tmp/v23-carry/base && cp /tmp/v23-base/build/tools/int4mm /tmp/v23-carry/base/
  variants="new base"
fi
tar -C /tmp/v23-carry -cJf build/carry.tar.xz $variants
ls -l build/carry.tar.xz
