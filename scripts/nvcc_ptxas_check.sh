#!/usr/bin/env bash
# CUDA compiler launcher of the int4mm library (src/cuda/CMakeLists.txt): runs
# the nvcc command it is given with ptxas's per-kernel report on, and fails
# the compile where ptxas serialized wgmma instructions. ptxas reports that
# as a warning (C7512), which -Xptxas=-Werror turns into an error, or as an
# info line (C7511), which it does not (docs/cuda.md, v7.0); either way the
# kernel runs at a fraction of its speed. The report's other lines are
# dropped; everything else nvcc prints passes through.
set -uo pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$@" -Xptxas=-v 2>"$log"
status=$?
grep -v -E '^ptxas info +: |^ +[0-9]+ bytes stack frame' "$log" >&2
if grep -E '\(C751[12]\)' "$log" >&2; then
  echo "error: ptxas serialized wgmma instructions in the kernel named above (C7511/C7512)" >&2
  exit 1
fi
exit $status
