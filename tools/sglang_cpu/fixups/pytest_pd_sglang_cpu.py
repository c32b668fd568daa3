"""pytest-pd's workarounds for running SGLang's CPU path on a machine without any GPU.

Installed by tools/sglang_cpu/setup.sh into the real-engine environment only (a .pth file imports
this module at interpreter start; it imports nothing heavy until SGLang's own modules load).
Written for one SGLang version: if the installed SGLang differs, or a workaround no longer fits
the code it patches, importing that code fails loudly with what to do.

1. Mooncake's KV sender pins host memory for its index tensors (``cudaHostRegister``), which fails
   without an NVIDIA driver; with ``supports_host_tensor_indices = False`` it uses plain memory.
2. (common_ops.py, beside this file) sgl_kernel's loader needs a ``common_ops`` module.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

SGLANG_VERSION = "0.5.23"
MOONCAKE_CONN = "sglang.srt.disaggregation.mooncake.conn"
WHAT_TO_DO = ("tools/sglang_cpu/fixups/ was written for SGLang " + SGLANG_VERSION + "; re-run "
              "`make real-sglang` to rebuild the environment with that version, or review the "
              "workarounds for the new one.")


class WorkaroundError(RuntimeError):
    pass


def _check_version() -> None:
    from importlib.metadata import version

    found = version("sglang")
    if found != SGLANG_VERSION:
        raise WorkaroundError(f"pytest-pd CPU workarounds: installed SGLang is {found}. {WHAT_TO_DO}")


def _patch_mooncake(module) -> None:
    sender = getattr(module, "MooncakeKVSender", None)
    if sender is None or not hasattr(sender, "supports_host_tensor_indices"):
        raise WorkaroundError(
            f"pytest-pd CPU workarounds: {MOONCAKE_CONN}.MooncakeKVSender.supports_host_tensor_indices "
            f"no longer exists in SGLang {SGLANG_VERSION}'s code as installed. {WHAT_TO_DO}")
    sender.supports_host_tensor_indices = False


class _PatchingLoader(importlib.abc.Loader):
    """SGLang's own loader for the mooncake connector module, then ``_patch_mooncake``."""

    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module) -> None:
        _check_version()
        self.inner.exec_module(module)
        _patch_mooncake(module)

    def __getattr__(self, name: str):  # get_code, get_source, is_package, …
        return getattr(self.inner, name)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds SGLang's mooncake connector module through the other finders and wraps its loader."""

    pytest_pd_fixup = True

    def find_spec(self, name, path=None, target=None):
        if name != MOONCAKE_CONN:
            return None
        for finder in sys.meta_path:
            if getattr(finder, "pytest_pd_fixup", False) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


def install() -> None:
    if not any(getattr(f, "pytest_pd_fixup", False) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def check() -> None:
    """Import what the workarounds touch, now (setup.sh calls this once after installing)."""
    _check_version()
    import importlib

    import common_ops  # noqa: F401

    module = importlib.import_module(MOONCAKE_CONN)
    if module.MooncakeKVSender.supports_host_tensor_indices is not False:
        raise WorkaroundError(f"pytest-pd CPU workarounds: the mooncake patch did not apply. {WHAT_TO_DO}")
    # SGLang's registry imports the package named by SGLANG_EXTERNAL_MODEL_PACKAGE leniently
    # (an import error is only a warning, then it loads every model): import it strictly here.
    import os

    os.environ.setdefault("SGLANG_EXTERNAL_MODEL_PACKAGE", "pytest_pd_sglang_models")  # as the cpu-* files
    from sglang.srt.models.registry import import_model_classes

    if "LlamaForCausalLM" not in import_model_classes("pytest_pd_sglang_models", strict=True):
        raise WorkaroundError(f"pytest-pd CPU fixups: no Llama in pytest_pd_sglang_models. {WHAT_TO_DO}")
    print(f"pytest-pd CPU workarounds apply to SGLang {SGLANG_VERSION}")
