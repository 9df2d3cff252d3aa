#!/usr/bin/env bash
# Builds int4mm with warnings as errors and runs every test: the C++ suites
# through CTest (CUDA tests are compiled wherever nvcc is, and report SKIPPED
# without a GPU), then the Python suite when it is there. Exits non-zero on
# any failure. The build goes to $BUILD_DIR (default: build); $CMAKE_ARGS are
# added to the configure step (e.g. CMAKE_ARGS=-DINT4MM_CUDA=OFF).
#
#   bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

bash scripts/install_deps.sh
source scripts/env.sh

build_dir="${BUILD_DIR:-build}"
jobs="$(nproc)"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DINT4MM_WERROR=ON -DINT4MM_TESTS=ON ${CMAKE_ARGS:-}
cmake --build "$build_dir" -j "$jobs"
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs"

if [ -d python/tests ] && [ -f scripts/test_python.sh ]; then
  bash scripts/test_python.sh
fi

echo "test.sh: all tests passed in $(( $(date +%s) - start )) s"
