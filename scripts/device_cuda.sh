#!/usr/bin/env bash
# One device call: build for sm_90a, run the CUDA tests, compute-sanitizer,
# the CUDA bench and PyTorch's tinygemm on the same shapes. Run through the
# device tool from the repo root, carrying .devdeps (see docs/cuda.md):
#   bash scripts/device_cuda.sh [build|test|bench|tune|jit|all]
# (jit: the tests with every kernel compiled by the driver from the
# compute_80 PTX, CUDA_FORCE_PTX_JIT=1: the path a GPU newer than the SASS
# targets takes; gemm_wgmma is not dispatched there.)
# Results land in $OUT (bench.tgz: bench-*.json / .txt and torch.*; logs).
# Variables: DTYPES, SHAPES, MS, GROUP_SIZES (group sizes timed beside 128),
# SKIP_TORCH, TUNE_SHAPES, TUNE_ONLY, SANITIZE=0 (tests without
# compute-sanitizer: a call's 10 minutes hold either the sanitizers or the
# tune run, not both).
set -uo pipefail
what=${1:-all}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader

# GoogleTest, CLI11 and nlohmann_json are not on the device image: carried.
if [ -d .devdeps ]; then
  cp -r .devdeps/include/* /usr/include/
  mkdir -p /usr/share/cmake && cp -r .devdeps/cmake/* /usr/share/cmake/
  cmake -S .devdeps/googletest -B /tmp/gtest -G Ninja -DBUILD_GMOCK=OFF -DCMAKE_INSTALL_PREFIX=/usr/local >/dev/null &&
    ninja -C /tmp/gtest install >/dev/null || { echo "googletest build failed"; exit 1; }
fi

if [ "$what" = jit ]; then
  cmake -S . -B build-jit -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DINT4MM_CUDA_GENCODE="-gencode=arch=compute_90a,code=sm_90a;-gencode=arch=compute_80,code=compute_80" \
    >/tmp/configure.log 2>&1 || { tail -30 /tmp/configure.log; exit 1; }
  ninja -C build-jit test_cuda int4mm_cli >/tmp/build.log 2>&1 || { grep -E "error|FAILED" /tmp/build.log | head -40; exit 1; }
  # cuBLAS does not initialize under forced JIT (CUBLAS_STATUS_INTERNAL_ERROR):
  # the tests that reach it are left out.
  CUDA_FORCE_PTX_JIT=1 ./build-jit/tests/cuda/test_cuda --gtest_brief=1 \
    --gtest_filter='-*dequant_cublas*:CudaKernels.Public*:CudaKernels.Misaligned*' > "$OUT/test_cuda_jit.log" 2>&1
  echo "test_cuda (PTX JIT) exit $?:"; grep -E "^\[  (PASSED|FAILED|SKIPPED) |Failure|error" "$OUT/test_cuda_jit.log" | head -30
  exit 0
fi
cmake -S . -B build-dev -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DINT4MM_CUDA_GENCODE="-gencode=arch=compute_90a,code=sm_90a" >/tmp/configure.log 2>&1 ||
  { tail -30 /tmp/configure.log; exit 1; }
# Logs stay out of $OUT unless they failed: the device tool returns 8 files at most.
# The CUDA targets only (the CPU tests run in CI).
ninja -C build-dev test_cuda int4mm_cli int4mm_tune_mma >/tmp/build.log 2>&1 || { grep -E "error|FAILED" /tmp/build.log | head -40; exit 1; }
[ "$what" = build ] && exit 0

if [ "$what" != bench ]; then
  ./build-dev/tests/cuda/test_cuda --gtest_brief=1 > "$OUT/test_cuda.log" 2>&1
  echo "test_cuda exit $?:"; grep -E "^\[  (PASSED|FAILED|SKIPPED) |tests ran|Failure|error" "$OUT/test_cuda.log" | head -30
  ./build-dev/tools/int4mm selftest 2>&1 | grep -E "FAIL|failures" | tail -5
fi
if [ "$what" != bench ] && [ "${SANITIZE:-1}" != 0 ]; then
  # Sanitizers over every kernel the dispatch uses on this GPU, on a subset of
  # the shapes (memcheck runs each test 10-100x slower).
  timeout 420 compute-sanitizer --tool memcheck --error-exitcode 9 ./build-dev/tests/cuda/test_cuda \
    --gtest_brief=1 --gtest_filter='CudaPacking*:CudaKernels.Public*:CudaKernels.Mis*:MetalPort*:CudaDequant*:OddShapes/CudaKernels.MatchOracle/*_n4100_*:OddShapes/CudaKernels.MatchOracle/gemm_wgmma*bfloat16*:OddShapes/WgmmaConfigs*bfloat16_g32:OddShapes/GemvShapes*:Warps16/GemvShapes*:Scaled*/GemvShapes.MatchOracle/*_m8_*:Scaled*/GemvShapes.MatchOracle/*_m13_*' \
    >"$OUT/memcheck.log" 2>&1; echo "memcheck exit $?: $(grep -E 'ERROR SUMMARY' "$OUT/memcheck.log" | tail -1)"
  timeout 150 compute-sanitizer --tool racecheck --error-exitcode 9 ./build-dev/tests/cuda/test_cuda \
    --gtest_brief=1 --gtest_filter='CudaKernels.Public*:CudaDequant*:OddShapes/CudaKernels.MatchOracle/gemm_mma_m40_*:OddShapes/WgmmaConfigs.MatchOracle/*_m70_*bfloat16_g128:OddShapes/WgmmaConfigs.MatchOracle/*_m300_*k640_float16_g32:OddShapes/GemvShapes.MatchOracle/*_m13_*:Warps16/GemvShapes.MatchOracle/*_m8_*:Scaled8Group128/GemvShapes.MatchOracle/*_m8_*:Scaled16Group128/GemvShapes.MatchOracle/*_m13_*' \
    >"$OUT/racecheck.log" 2>&1; echo "racecheck exit $?: $(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$OUT/racecheck.log" | tail -1)"
fi
if [ "$what" = tune ]; then
  ./build-dev/bench/int4mm_tune_mma ${TUNE_SHAPES:-} | tee "$OUT/tune.txt"
  [ -n "${TUNE_ONLY:-}" ] && exit 0
  what=bench
fi
if [ "$what" != test ]; then
  shapes=${SHAPES:-4096x4096,4096x14336,14336x4096,8192x8192,8192x28672,28672x8192}
  ms=${MS:-1,2,4,8,16,32,64,128,256,1024,4096}
  for dtype in ${DTYPES:-bf16 fp16 fp32}; do
    # float32 at large M runs cuBLAS SGEMM for tens of ms a call: fewer M.
    dtype_ms=$ms
    [ "$dtype" = fp32 ] && dtype_ms=${MS_FP32:-1,2,4,8,16,256,1024}
    ./build-dev/tools/int4mm bench --backend cuda --shapes "$shapes" --m "$dtype_ms" --dtype "$dtype" \
      --json "$OUT/bench-$dtype.json" > "$OUT/bench-$dtype.txt" 2>&1
    echo "== $dtype"; cat "$OUT/bench-$dtype.txt" | cut -c1-170
  done
  # Group sizes against group 128 at the ends of the M range (GROUP_SIZES="" skips).
  for group in ${GROUP_SIZES-32 64 256}; do
    ./build-dev/tools/int4mm bench --backend cuda --shapes "${GROUP_SHAPES:-8192x28672,8192x8192}" --m 1,4096 \
      --dtype bf16 --group-size "$group" --json "$OUT/bench-g$group.json" > "$OUT/bench-g$group.txt" 2>&1
    echo "== bf16 group $group"; cut -c1-170 "$OUT/bench-g$group.txt"
  done
  [ -n "${SKIP_TORCH:-}" ] || PYTHONUNBUFFERED=1 python3 bench/torch_cuda_bench.py --shapes "$shapes" --m "$ms" \
    --json "$OUT/torch.json" 2>&1 | tee "$OUT/torch.txt"
  # The device tool returns 8 files at most: the bench's outputs go back as one tarball.
  (cd "$OUT" && files=$(ls bench-*.json bench-*.txt torch.json torch.txt 2>/dev/null) &&
    tar czf bench.tgz $files && rm -f $files && echo "results: bench.tgz ($(echo $files | wc -w) files)")
fi
