"""Stand-in for sgl_kernel's compiled ``common_ops`` library (pytest-pd CPU workaround 2).

PyPI's sglang-kernel wheel ships CUDA builds only; its loader falls back to ``import common_ops``.
SGLang's torch-native CPU path needs one op of it to exist, ``sgl_kernel::copy_all_layer_kv_cache_cpu``
(it is looked up, never called, on the paths the real-engine tier uses). Calling it fails loudly.
"""

import torch

_LIB = torch.library.Library("sgl_kernel", "FRAGMENT")
_LIB.define("copy_all_layer_kv_cache_cpu(Tensor data_ptrs, Tensor strides, Tensor tgt_loc, "
            "Tensor src_loc) -> ()")


def _not_available(data_ptrs, strides, tgt_loc, src_loc):
    raise NotImplementedError(
        "sgl_kernel::copy_all_layer_kv_cache_cpu is a pytest-pd stand-in (tools/sglang_cpu/fixups/"
        "common_ops.py): this SGLang CPU set-up took a path that needs the compiled kernel.")


_LIB.impl("copy_all_layer_kv_cache_cpu", _not_available, "CPU")
