#!/usr/bin/env bash
# Set up canora in ./.venv on a fresh machine: CPU torch 2.13.0 first (so nothing pulls a CUDA build),
# then canora with every extra. Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 'setuptools<81' wheel
.venv/bin/python -m pip install -q torch==2.13.0
# ui = the web page (gradio); dev's playwright drives the system chromium, so no `playwright install`;
# onnx = `canora export` (tests/test_onnx.py skips without it)
.venv/bin/python -m pip install -q -e '.[train,analysis,eval,ui,dev,onnx]'
.venv/bin/canora --version
