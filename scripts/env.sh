# Sourced by the scripts: puts nvcc on PATH where the CUDA toolkit is installed
# in its usual place but not on PATH, so that CMake turns the CUDA backend on.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
