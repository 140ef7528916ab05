#!/usr/bin/env bash
# One-step set-up: a virtual environment in .venv with latte-video and its dependencies.
# On a machine without an NVIDIA GPU the CPU build of torch is installed (never a multi-GB CUDA build).
# Override the torch requirement with LATTE_TORCH_SPEC (e.g. LATTE_TORCH_SPEC="torch==2.5.1").
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    spec=${LATTE_TORCH_SPEC:-"torch>=2.4"}          # GPU machine: the regular (CUDA) build
  else
    spec=${LATTE_TORCH_SPEC:-"torch==2.13.0"}       # CPU machine: the local CPU build
    # Elsewhere, point pip at a CPU wheel index, e.g. PIP_EXTRA_INDEX_URL=<pytorch cpu index>.
  fi
  $PIP install -q "$spec"
fi
$PIP install -q -e ".[dev,demo]"
.venv/bin/latte --version
