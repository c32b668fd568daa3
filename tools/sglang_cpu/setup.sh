#!/usr/bin/env bash
# One-time set-up of real SGLang on this CPU-only machine, for the real-engine tier
# (clusters/cpu-*.yaml, tests marked real_sglang). Run it as `make real-sglang`.
#
# Creates, once, a separate virtualenv with pinned SGLang, its router and Mooncake's TCP transfer
# engine (and accelerate, which `transformers serve` from the same environment needs), installs
# the two CPU workarounds (fixups/: each file says what it works around) and the package that
# registers the tiny model's architecture alone (start-up without importing every model) into that
# environment only, and makes a tiny random-weight Llama with the simulator's tokenizer (never downloaded).
# Everything lands in $PD_SGLANG_HOME (default ~/.cache/pytest-pd/sglang-0.5.23-cpu), which the
# cpu-* cluster files name; a second run with nothing changed takes a second.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

SGLANG_VERSION=0.5.23
ROUTER_VERSION=0.3.2
MOONCAKE_VERSION=0.3.13.post1
TORCH_VERSION=2.14.1      # what sglang 0.5.23 pins
ACCELERATE_VERSION=1.15.0 # for `transformers serve` (an OpenAI-compatible engine that is not SGLang)
home="${PD_SGLANG_HOME:-$HOME/.cache/pytest-pd/sglang-${SGLANG_VERSION}-cpu}"
venv="$home/venv"
model="$home/tiny-llama"
stamp="$home/.ready"
python="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# What the environment is made of: change any of it and the next run rebuilds it.
fixups=("$here/fixups/pytest_pd_sglang_cpu.py" "$here/fixups/common_ops.py"
        "$here/fixups/pytest_pd_sglang_cpu.pth")
models="$here/fixups/pytest_pd_sglang_models"   # SGLANG_EXTERNAL_MODEL_PACKAGE of the cpu-* files
inputs=("$0" "${fixups[@]}" "$models"/*.py "$here/make_tiny_model.py" "$repo"/clusters/models/sim-tiny/*.json)
want="$(cat "${inputs[@]}" | sha256sum)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ] \
   && [ -f "$model/config.json" ]; then
  echo "real SGLang $SGLANG_VERSION (CPU) is ready in $home"
  exit 0
fi
t0=$SECONDS

# Mooncake's transfer engine links against the RDMA user-space libraries even when it only
# speaks TCP.
libs="$(/sbin/ldconfig -p 2>/dev/null || true)"
if ! grep -q 'libibverbs.so.1' <<<"$libs" || ! grep -q 'librdmacm.so.1' <<<"$libs"; then
  echo "installing libibverbs1 librdmacm1 (Debian packages Mooncake links against)"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libibverbs1 librdmacm1 >/dev/null
fi

mkdir -p "$home"
rm -f "$stamp"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
echo "installing sglang==$SGLANG_VERSION sglang-router==$ROUTER_VERSION into $venv (about 5 min, 11 GB, once)"
"$venv/bin/pip" install --quiet --no-warn-script-location \
  "sglang==$SGLANG_VERSION" "sglang-router==$ROUTER_VERSION" \
  "mooncake-transfer-engine-non-cuda==$MOONCAKE_VERSION" "torch==$TORCH_VERSION" \
  "accelerate==$ACCELERATE_VERSION"

# The workarounds, in this environment only.
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cp "${fixups[@]}" "$site/"
rm -rf "$site/pytest_pd_sglang_models" && cp -r "$models" "$site/"
"$venv/bin/python" -c 'import pytest_pd_sglang_cpu as f; f.check()'

# The tiny model: random weights (seeded), the simulator's tokenizer.
rm -rf "$model"
HF_HUB_OFFLINE=1 "$venv/bin/python" "$here/make_tiny_model.py" \
  --tokenizer "$repo/clusters/models/sim-tiny" --out "$model"

echo "$want" > "$stamp"
echo "real SGLang $SGLANG_VERSION (CPU) ready in $home ($((SECONDS - t0)) s, $(du -sh "$home" | cut -f1))"
