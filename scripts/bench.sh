#!/usr/bin/env bash
# Builds int4mm (Release) and runs `int4mm bench` on the best backend present
# (CUDA where a GPU is, else the CPU) with the default shapes: the Llama-3-8B
# layers at M = 1, 16, 256. Prints the table and writes bench-results.json.
# Extra arguments go to `int4mm bench`, e.g.
#
#   bash scripts/bench.sh --shapes 8192x28672 --m 1,2,4,8 --dtype fp16
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install_deps.sh
source scripts/env.sh

build_dir="${BUILD_DIR:-build}"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-}
cmake --build "$build_dir" --target int4mm_cli -j "$(nproc)"

json_args=(--json bench-results.json)
for arg in "$@"; do
  if [ "$arg" = "--json" ] || [[ "$arg" == --json=* ]]; then json_args=(); fi
done
"$build_dir/tools/int4mm" bench "${json_args[@]}" "$@"
