#!/usr/bin/env python3
"""The SASS of the kernels in a CUDA object or binary, per kernel: its
instruction count and opcodes, and optionally the lines whose opcode matches
a pattern. Where the toolkit has no cuobjdump / nvdisasm (the dev machine's
CUDA 13 has neither), they come from PyPI's nvidia-cuda-cuobjdump and
nvidia-cuda-nvdisasm wheels, unpacked once into build/sass-tools.

  python3 bench/sass_summary.py build/CMakeFiles/int4mm.dir/src/cuda/dispatch.cu.o \\
      --kernel 'gemv_mma_kernel<__nv_bfloat16, 128, 2, 4, 8' [--show 'CCTL|LDG'] [--top 12]

--kernel is a regular expression on the demangled name; --old takes a second
file and prints both counts per kernel (an A/B of one change).
"""
import argparse
import collections
import glob
import os
import re
import shutil
import subprocess
import sys
import zipfile

TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "sass-tools")
WHEELS = ("nvidia-cuda-cuobjdump", "nvidia-cuda-nvdisasm")
INSTRUCTION = re.compile(r"^\s+/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)")


def cuobjdump():
    """A cuobjdump whose nvdisasm is on PATH (fetched into TOOLS if needed)."""
    if shutil.which("cuobjdump") and shutil.which("nvdisasm"):
        return "cuobjdump"
    found = glob.glob(os.path.join(TOOLS, "nvidia", "*", "bin", "cuobjdump"))
    if not found:
        os.makedirs(TOOLS, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", TOOLS, *WHEELS], check=True)
        for wheel in glob.glob(os.path.join(TOOLS, "*.whl")):
            with zipfile.ZipFile(wheel) as z:
                z.extractall(TOOLS)
        found = glob.glob(os.path.join(TOOLS, "nvidia", "*", "bin", "cuobjdump"))
    bin_dir = os.path.dirname(found[0])
    for tool in ("cuobjdump", "nvdisasm"):
        os.chmod(os.path.join(bin_dir, tool), 0o755)
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ["PATH"]
    return found[0]


def kernels(path):
    """{demangled name: [(opcode, SASS line)]} of every function in the file."""
    sass = subprocess.run([cuobjdump(), "-sass", path], capture_output=True, text=True, check=True).stdout
    mangled, out = None, {}
    for line in sass.split("\n"):
        if "Function :" in line:
            mangled = line.split("Function :")[1].strip()
            out[mangled] = []
        elif mangled is not None:
            m = INSTRUCTION.match(line)
            if m:
                out[mangled].append((m.group(1), line.split(";")[0].strip()))
    names = subprocess.run(["c++filt"], input="\n".join(out), capture_output=True, text=True).stdout.split("\n")
    return {name: out[mangled] for mangled, name in zip(out, names)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file")
    parser.add_argument("--kernel", default=".", help="regular expression on the demangled name")
    parser.add_argument("--old", help="a second file: both counts per kernel")
    parser.add_argument("--show", help="print the lines whose opcode matches this regular expression")
    parser.add_argument("--top", type=int, default=12, help="opcodes listed per kernel")
    args = parser.parse_args()
    new = kernels(args.file)
    old = kernels(args.old) if args.old else {}
    for name in sorted(new):
        if not re.search(args.kernel, name):
            continue
        code = new[name]
        counts = collections.Counter(op for op, _ in code)
        before = f"{len(old[name])} -> " if name in old else ""
        print(f"{name}\n  {before}{len(code)} instructions: " +
              ", ".join(f"{op} {n}" for op, n in counts.most_common(args.top)))
        if args.show:
            for op, line in code:
                if re.fullmatch(args.show, op):
                    print(f"    {line}")


if __name__ == "__main__":
    main()
