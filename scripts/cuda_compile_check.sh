#!/usr/bin/env bash
# Compile check of geolayers' C++/CUDA sources against a CUDA build of torch, without a GPU.
#
# Usage: scripts/cuda_compile_check.sh [PYTHON]
#   PYTHON  python of an environment with a CUDA build of torch (default /tmp/cuda-venv/bin/python)
#
# Phase 1 compiles every csrc/cuda/*.cu with nvcc and csrc/*.cpp, csrc/cpu/*.cpp with the host
# C++ compiler, each to its own object file in a temp dir, with the flags that
# torch.utils.cpp_extension.BuildExtension would pass for setup.py's extension (queried from
# torch.utils.cpp_extension itself), and reports every file that fails.
# Phase 2 (skip with GEOLAYERS_CHECK_LINK=0) builds and links the whole extension through
# `GEOLAYERS_FORCE_CUDA=1 python setup.py build_ext` from a temp copy of the tree, then loads the
# resulting shared object into that torch and checks that the CPU and CUDA kernels registered.
#
# Environment: CUDA_HOME (default /usr/local/cuda), CUDA_INC_PATH (extra CUDA include dir), TORCH_CUDA_ARCH_LIST (default "9.0", i.e.
# sm_90 for H100/H200), MAX_JOBS (default 2), GEOLAYERS_CHECK_LINK (default 1),
# KEEP_TMP=1 keeps the temp dir. Exits non-zero if any file fails to compile or the link/load fails.
set -uo pipefail

PY=${1:-/tmp/cuda-venv/bin/python}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export MAX_JOBS=${MAX_JOBS:-2}
LINK=${GEOLAYERS_CHECK_LINK:-1}
NVCC="$CUDA_HOME/bin/nvcc"
CXX=${CXX:-g++}

die() { echo "cuda_compile_check: $*" >&2; exit 2; }
[ -x "$PY" ] || die "no python at $PY"
[ -x "$NVCC" ] || die "no nvcc at $NVCC (set CUDA_HOME)"

# A toolkit without the math libraries (cusparse.h, cublas_v2.h, ... which ATen/cuda/CUDAContext.h
# includes) is completed with the headers of the nvidia-* wheels that the CUDA torch depends on,
# through CUDA_INC_PATH, which torch.utils.cpp_extension.include_paths("cuda") appends after
# $CUDA_HOME/include.
if [ -z "${CUDA_INC_PATH:-}" ] && [ ! -f "$CUDA_HOME/include/cusparse.h" ]; then
  inc=$("$PY" -c 'import glob, os, sysconfig
hits = sorted(glob.glob(os.path.join(sysconfig.get_paths()["purelib"], "nvidia", "*", "include", "cusparse.h")))
print(os.path.dirname(hits[-1]) if hits else "")')
  [ -n "$inc" ] || die "$CUDA_HOME/include has no cusparse.h and no nvidia wheel provides it (set CUDA_INC_PATH)"
  export CUDA_INC_PATH=$inc
  echo "note: $CUDA_HOME/include lacks cusparse.h; using CUDA_INC_PATH=$CUDA_INC_PATH"
fi

TMP=$(mktemp -d /tmp/geolayers-cuda-check.XXXXXX)
if [ "${KEEP_TMP:-0}" = 1 ]; then
  echo "temp dir: $TMP"
else
  trap 'rm -rf "$TMP"' EXIT
fi

# ---- flags, from torch.utils.cpp_extension (mirrors setup.py: -O3, -fopenmp, -lineinfo,
# Py_LIMITED_API, WITH_CUDA, csrc/include; BuildExtension adds TORCH_API_INCLUDE_EXTENSION_H,
# TORCH_EXTENSION_NAME=_C, its own Py_LIMITED_API, -std, COMMON_NVCC_FLAGS and the arch flags).
"$PY" - "$ROOT" "$TMP" <<'EOF' 2> "$TMP/flags.err" || { cat "$TMP/flags.err" >&2; die "could not query torch's flags"; }
import os, sys, sysconfig
import torch
import torch.utils.cpp_extension as ce

root, tmp = sys.argv[1], sys.argv[2]
if torch.version.cuda is None:
    sys.exit(f"torch {torch.__version__} at {torch.__file__} is not a CUDA build")
std = "-std=c++20"  # what BuildExtension appends when no -std is given (torch >= 2.10 needs C++20)
inc = [f"-I{p}" for p in ce.include_paths("cuda")]
inc += [f"-I{os.path.join(root, 'csrc', 'include')}", f"-I{sysconfig.get_paths()['include']}"]
defs = ["-DPy_LIMITED_API=0x030b0000", "-DWITH_CUDA",  # setup.py define_macros
        "-DTORCH_API_INCLUDE_EXTENSION_H", f"-DPy_LIMITED_API={ce.min_supported_cpython}",
        "-DTORCH_EXTENSION_NAME=_C"]
cxx = ["-Wsign-compare", "-DNDEBUG", "-Wall"] + inc + defs + ["-fPIC", std, "-O3", "-fopenmp"]  # + python CFLAGS
nvcc = (inc + defs + ce.COMMON_NVCC_FLAGS + ["--compiler-options", "-fPIC", std, "-O3", "-lineinfo"]
        + ce._get_cuda_arch_flags([]))
for name, flags in (("cxx", cxx), ("nvcc", nvcc)):
    with open(os.path.join(tmp, f"{name}.flags"), "w") as fh:
        fh.write("\n".join(flags) + "\n")
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}) from {os.path.dirname(torch.__file__)}")
EOF
mapfile -t CXX_FLAGS < "$TMP/cxx.flags"
mapfile -t NVCC_FLAGS < "$TMP/nvcc.flags"
echo "nvcc: $("$NVCC" --version | tail -2 | head -1)"
echo "host compiler: $("$CXX" --version | head -1)"
echo "TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST MAX_JOBS=$MAX_JOBS"

# ---- phase 1: one object per source file
cd "$ROOT" || die "cannot cd to $ROOT"
shopt -s nullglob
SOURCES=(csrc/cuda/*.cu csrc/*.cpp csrc/cpu/*.cpp)
[ "${#SOURCES[@]}" -gt 0 ] || die "no sources found under $ROOT/csrc"
mkdir -p "$TMP/obj"

compile_one() {  # $1 = source path relative to ROOT; writes $TMP/obj/<flat>.{o,log,rc}
  local src=$1 flat=${1//\//__}
  local start=$SECONDS rc
  if [[ $src == *.cu ]]; then
    "$NVCC" "${NVCC_FLAGS[@]}" -c "$src" -o "$TMP/obj/$flat.o" > "$TMP/obj/$flat.log" 2>&1
  else
    "$CXX" "${CXX_FLAGS[@]}" -c "$src" -o "$TMP/obj/$flat.o" > "$TMP/obj/$flat.log" 2>&1
  fi
  rc=$?
  echo "$rc $((SECONDS - start))" > "$TMP/obj/$flat.rc"
}

phase1_start=$SECONDS
running=0
for src in "${SOURCES[@]}"; do
  compile_one "$src" &
  running=$((running + 1))
  if [ "$running" -ge "$MAX_JOBS" ]; then wait -n; running=$((running - 1)); fi
done
wait

failed=()
for src in "${SOURCES[@]}"; do
  flat=${src//\//__}
  read -r rc secs < "$TMP/obj/$flat.rc"
  if [ "$rc" -eq 0 ]; then
    if [ -s "$TMP/obj/$flat.log" ]; then
      echo "ok    $src (${secs}s, with diagnostics:)"
      sed 's/^/      /' "$TMP/obj/$flat.log"
    else
      echo "ok    $src (${secs}s)"
    fi
  else
    echo "FAIL  $src (${secs}s, exit $rc):"
    sed 's/^/      /' "$TMP/obj/$flat.log"
    failed+=("$src")
  fi
done
echo "phase 1 (per-file compile): $((SECONDS - phase1_start))s"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "cuda_compile_check: FAILED to compile: ${failed[*]}" >&2
  exit 1
fi

# ---- phase 2: full build + link through setup.py, then load the library
if [ "$LINK" != 1 ]; then
  echo "cuda_compile_check: all ${#SOURCES[@]} files compile (link skipped)"
  exit 0
fi
phase2_start=$SECONDS
mkdir -p "$TMP/src"
cp -r "$ROOT/setup.py" "$ROOT/csrc" "$TMP/src/"
# pyproject.toml is left out: build_ext needs only setup.py, and the project metadata (readme,
# license, ...) has nothing to do with whether the extension compiles and links.
(cd "$TMP/src" && GEOLAYERS_FORCE_CUDA=1 "$PY" setup.py -q build_ext \
    --build-temp "$TMP/build" --build-lib "$TMP/lib") > "$TMP/build.log" 2>&1
rc=$?
if [ "$rc" -ne 0 ]; then
  echo "FAIL  setup.py build_ext (exit $rc):"
  sed 's/^/      /' "$TMP/build.log"
  grep -h '^FAILED: ' "$TMP/build.log" >&2
  echo "cuda_compile_check: FAILED in the setup.py build/link" >&2
  exit 1
fi
so=$(ls "$TMP"/lib/geolayers/_C*.so 2>/dev/null | head -1)
[ -n "$so" ] || { sed 's/^/      /' "$TMP/build.log"; echo "cuda_compile_check: no geolayers/_C*.so produced" >&2; exit 1; }
grep -E 'warning:' "$TMP/build.log" | sort | uniq -c | sed 's/^/      build warning: /'
"$PY" - "$so" <<'EOF' 2>&1 | grep -v "Failed to initialize NumPy\|_conversion_method_template\|No CUDA runtime is found"
import sys
import torch
torch.ops.load_library(sys.argv[1])
ops = sorted({s.name for s in torch._C._jit_get_all_schemas() if s.name.startswith("geolayers::")})
if not ops:
    sys.exit("no geolayers:: op schema registered")
missing = [f"{op}/{key}" for op in ops for key in ("CPU", "CUDA")
           if not torch._C._dispatch_has_kernel_for_dispatch_key(op, key)]
if missing:
    sys.exit(f"kernels not registered: {missing}")
print(f"loaded {sys.argv[1].rsplit('/', 1)[-1]}: CPU and CUDA kernels registered for {len(ops)} ops: "
      + ", ".join(op.split("::")[1] for op in ops))
EOF
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "cuda_compile_check: FAILED to load the built library" >&2; exit 1; }
echo "phase 2 (setup.py build_ext + link + load): $((SECONDS - phase2_start))s"
echo "cuda_compile_check: all ${#SOURCES[@]} files compile; the CUDA extension links and loads"
