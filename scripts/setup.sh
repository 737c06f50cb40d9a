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
# Opt-in (CANORA_LIVE_STACK=1): the real audio stack of `canora live` and its tests: the JACK server (its dummy
# driver needs no sound card), the PortAudio and JACK libraries (Debian packages, so root or sudo), and the live
# extra (sounddevice, JACK-Client). Without it tests/test_live_jack.py skips.
if [ "${CANORA_LIVE_STACK:-0}" = 1 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  if ! command -v jackd >/dev/null 2>&1 || ! ldconfig -p | grep libportaudio.so.2 >/dev/null; then
    ($SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
      --no-install-recommends jackd2 libportaudio2 libjack-jackd2-0 >/dev/null) \
      || echo "setup: jackd / PortAudio could not be installed; the live-stack tests will skip"
  fi
  .venv/bin/python -m pip install -q -e '.[live]'
fi
.venv/bin/canora --version
# The ONNX copies of the bundled models, kept in the user's cache (about a minute, once): with them conversions run
# on ONNX Runtime (--backend auto), about 1.7x faster than torch. Without them canora runs on torch.
.venv/bin/canora export bundled --cache >/dev/null \
  || echo "setup: the ONNX copies could not be made; conversions will run on torch"
echo "setup: canora is in ./.venv: run .venv/bin/canora, or 'source .venv/bin/activate' once per shell and type canora"
[ "${CANORA_LIVE_STACK:-0}" = 1 ] || echo "setup: for canora live (microphone to speakers) run CANORA_LIVE_STACK=1 bash scripts/setup.sh"
