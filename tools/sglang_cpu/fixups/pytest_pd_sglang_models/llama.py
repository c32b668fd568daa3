"""SGLang's own Llama (the tiny model's architecture), registered under its usual name."""

from sglang.srt.models.llama import EntryClass  # noqa: F401  (what SGLang's registry reads)
