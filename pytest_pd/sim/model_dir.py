"""The model folder a worker is launched with (``--model-path``, ``--tokenizer-path``): where its
tokenizer.json is, what its config.json says."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ModelDir:
    model_path: str
    tokenizer_path: str
    tokenizer_json: Path
    served_name: str

    def config(self) -> dict[str, Any]:
        """The model folder's config.json ({} when there is none)."""
        try:
            cfg = json.loads((Path(self.model_path) / "config.json").read_text())
        except (OSError, ValueError):
            return {}
        return cfg if isinstance(cfg, dict) else {}

    def context_length(self) -> int | None:
        v = self.config().get("max_position_embeddings")
        try:
            return int(v) if v else None
        except (TypeError, ValueError):
            return None


def locate(args: argparse.Namespace) -> ModelDir:
    """The folders the flags name; exits with a message when there is no tokenizer.json."""
    mp = Path(args.model_path).expanduser().resolve()
    tp_dir = Path(args.tokenizer_path).expanduser().resolve() if args.tokenizer_path else mp
    tj = tp_dir / "tokenizer.json" if tp_dir.is_dir() else tp_dir
    if not tj.is_file():
        raise SystemExit(
            f"pytest-pd sim: no tokenizer.json at {tj} (--model-path / "
            "--tokenizer-path must be a local directory holding tokenizer.json)"
        )
    return ModelDir(str(mp), str(tp_dir), tj, args.served_model_name or mp.name)
