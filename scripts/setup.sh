#!/usr/bin/env bash
# Set up a virtualenv with geolayers and everything it needs, on a machine with Python 3.11 and
# a C++ compiler. Safe to rerun: installed pieces are kept, the extension is rebuilt if stale.
#
#   bash scripts/setup.sh            # venv in .venv (or $GEOLAYERS_VENV)
#
# Why the steps are separate:
# - torch is pinned to 2.13.0 and installed first, alone: an unpinned torch pulls the multi-GB
#   CUDA build, while 2.13.0 resolves to the CPU build available to pip here. The package
#   itself is built against the installed torch (--no-build-isolation).
# - escnn is installed with --no-deps: its py3nj dependency needs a Fortran compiler and has no
#   wheel, and escnn runs without it. escnn's other dependencies are in pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${GEOLAYERS_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${GEOLAYERS_TORCH_VERSION:-2.13.0}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip "setuptools>=77" wheel ninja
if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  "${PIP[@]}" install "torch==$TORCH_VERSION"
fi
"${PIP[@]}" install --no-build-isolation -e ".[dev,examples,bench]"
"${PIP[@]}" install --no-deps "escnn==1.0.11"

# WordNet 3.0 for geolayers.datasets.wordnet (the Poincare embedding example reads it):
# Debian's wordnet-base package puts the database in /usr/share/wordnet. Tried only as root
# on Debian, without the recommended GUI, and never fatal: without it the reader's error
# says how to install it.
WORDNET_DIR="${WNHOME:-/usr/share/wordnet}"
if [ ! -f "$WORDNET_DIR/data.noun" ] && [ ! -f "$WORDNET_DIR/dict/data.noun" ]; then
  if [ "$(id -u)" = 0 ] && [ -f /etc/debian_version ] && command -v apt-get >/dev/null 2>&1; then
    APT=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wordnet-base)
    if ! { "${APT[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && "${APT[@]}" >/dev/null 2>&1; }; }; then
      echo "warning: could not install wordnet-base (WordNet 3.0); the WordNet reader will be unavailable" >&2
    fi
  else
    echo "note: WordNet 3.0 not in $WORDNET_DIR; to use geolayers.datasets.wordnet run, as root on Debian/Ubuntu: apt-get install wordnet-base (or set WNHOME)" >&2
  fi
fi
"$VENV/bin/python" - <<'PY'
import warnings
warnings.simplefilter("ignore")
import escnn, torch, geolayers  # noqa: E401,F401
print(f"geolayers {geolayers.__version__} on torch {torch.__version__}; backend: {geolayers.ops.backend()}")
PY
