#!/usr/bin/env bash
# The Python half of the tests: installs the package with `pip install .`
# (scikit-build-core + nanobind; the CUDA backend is built where nvcc is)
# into a virtual environment under $BUILD_DIR, with numpy, pytest, torch and
# transformers from PyPI, then runs python/tests. Tests that need torch or a
# GPU skip themselves with a reason where those are absent.
# INT4MM_SKIP_TORCH=1 leaves torch and transformers out (numpy tests only).
#
#   bash scripts/test_python.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

venv="${BUILD_DIR:-build}/venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
"${pip[@]}" numpy pytest ml_dtypes
if [ -z "${INT4MM_SKIP_TORCH:-}" ]; then
  "${pip[@]}" torch transformers
fi
"${pip[@]}" .
"$venv/bin/python" -m pytest python/tests -q -rs
