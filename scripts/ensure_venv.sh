# Sourced by run_pipeline.sh and run_tests.sh: make .venv and install what is missing; sets
# PY to the Python to run.
# Usage: source scripts/ensure_venv.sh requirements.txt
# TORCH_SPEC overrides the torch that is installed when none is present.
# TATARGPT_PYTHON=/path/to/python uses that interpreter as it is, with no .venv and no
# installs (Colab's own Python with its CUDA torch, a conda environment, a GPU image);
# it must already have the packages of requirements.txt.

_req_file="${1:-requirements.txt}"

if [ -n "${TATARGPT_PYTHON:-}" ]; then
    if ! "$TATARGPT_PYTHON" -c 'import torch, tokenizers, numpy, tqdm, matplotlib' >/dev/null 2>&1; then
        echo "error: TATARGPT_PYTHON=$TATARGPT_PYTHON lacks packages of requirements.txt." >&2
        echo "Install them into it ($TATARGPT_PYTHON -m pip install -r requirements.txt), or unset TATARGPT_PYTHON to use .venv." >&2
        exit 2
    fi
    PY="$TATARGPT_PYTHON"
    return 0 2>/dev/null || exit 0
fi

_python="${PYTHON:-python3}"

if ! command -v "$_python" >/dev/null 2>&1; then
    echo "error: $_python not found. Install Python 3.10 or newer, then run this again." >&2
    exit 2
fi
if ! "$_python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "error: Python 3.10 or newer is needed; $_python is $("$_python" --version 2>&1)." >&2
    echo "Set PYTHON=/path/to/python3.11 and run this again." >&2
    exit 2
fi

if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv with $("$_python" --version 2>&1)"
    "$_python" -m venv .venv
fi

# torch first: the pinned version we test with (a plain `torch` may pull a multi-GB build).
# (find_spec looks for it without importing it: an import of torch takes seconds.)
if ! .venv/bin/python -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)' >/dev/null 2>&1; then
    echo "==> installing ${TORCH_SPEC:-torch==2.13.0}"
    .venv/bin/python -m pip install --quiet "${TORCH_SPEC:-torch==2.13.0}"
fi

# The rest, once per version of the requirement files (a stamp records what was installed).
_stamp=".venv/.installed-$(cat requirements*.txt | sha256sum | cut -c1-16)-$(basename "$_req_file")"
if [ ! -f "$_stamp" ]; then
    echo "==> installing $_req_file"
    .venv/bin/python -m pip install --quiet -r "$_req_file"
    touch "$_stamp"
fi
PY=.venv/bin/python
