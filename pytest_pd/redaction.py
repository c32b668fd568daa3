"""Secrets out of everything pytest-pd writes: results files, the report, log headers, messages.

Two tools: by *name* (env variables and flags that look like tokens, keys or passwords have their
values replaced wherever a spec or a command line is shown), and by *value* (the actual secret
values a cluster file brings in — env values, secret flag values, SSH passwords from
``password_env`` — are scrubbed from free text such as server log tails and error messages).
Pure functions apart from reading the environment for ``password_env``."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

REDACTED = "***redacted***"
# "TOKEN" but not token counts or tokenizers (--max-total-tokens, TOKENIZERS_PARALLELISM)
_SECRET_NAME = re.compile(r"TOKEN(?![SI])|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
_ASSIGNMENT = re.compile(r"(?P<name>\b[A-Za-z_][A-Za-z0-9_]*)=(?P<value>'[^']*'|\"[^\"]*\"|\S+)")
_SECRET_FLAG = re.compile(
    r"(?P<flag>--[\w-]*(?:token(?![si])|key|secret|password)[\w-]*)(?P<sep>=|\s+)"
    r"(?P<value>'[^']*'|\"[^\"]*\"|\S+)",
    re.IGNORECASE,
)
_FLAG_NAME = re.compile(r"^--[\w-]*(?:token(?![si])|key|secret|password)[\w-]*$", re.IGNORECASE)
MIN_SECRET_LEN = 4  # shorter values ("1", "yes") would scrub ordinary text


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def redact_env(data: Any) -> Any:
    """A copy of a cluster spec dump with every ``env`` value whose name looks like a secret
    (TOKEN, KEY, SECRET, PASSWORD…) and every secret flag's value in ``extra_args`` replaced."""
    if isinstance(data, dict):
        out: dict[Any, Any] = {}
        for key, value in data.items():
            if key == "env" and isinstance(value, dict):
                out[key] = {k: (REDACTED if is_secret_name(str(k)) else v) for k, v in value.items()}
            elif key == "extra_args" and isinstance(value, list):
                out[key] = redact_argv(value)
            else:
                out[key] = redact_env(value)
        return out
    if isinstance(data, list):
        return [redact_env(v) for v in data]
    return data


def redact_argv(argv: Sequence[Any]) -> list[Any]:
    """An argument list with the value of every secret-looking flag replaced."""
    out: list[Any] = []
    hide_next = False
    for arg in argv:
        text = str(arg)
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        flag, eq, _ = text.partition("=")
        if _FLAG_NAME.match(flag):
            if eq:
                out.append(f"{flag}={REDACTED}")
                continue
            hide_next = True
        out.append(arg)
    return out


def redact_commands(text: str) -> str:
    """Rendered commands with secret-looking variable assignments and flag values replaced."""
    text = _ASSIGNMENT.sub(lambda m: f"{m['name']}={REDACTED}" if is_secret_name(m["name"]) else m[0], text)
    return _SECRET_FLAG.sub(lambda m: f"{m['flag']}{m['sep']}{REDACTED}", text)


def secret_values(spec_dump: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> set[str]:
    """The secret values a cluster spec (``spec.model_dump()``) brings in: secret-named env values,
    secret flag values in ``extra_args``, and the passwords its ``password_env`` names point to."""
    environ = os.environ if environ is None else environ
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "env" and isinstance(value, dict):
                    found.update(str(v) for k, v in value.items() if is_secret_name(str(k)))
                elif key == "extra_args" and isinstance(value, list):
                    found.update(
                        str(orig) for orig, red in zip(value, redact_argv(value), strict=True) if red != orig
                    )
                elif key == "password_env" and value:
                    found.add(environ.get(str(value), ""))
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec_dump)
    values = set()
    for value in found:  # "--api-key=abc" → "abc"
        value = value.split("=", 1)[1] if value.startswith("--") and "=" in value else value
        if len(value) >= MIN_SECRET_LEN:
            values.add(value)
    return values


def scrub(text: str, values: Iterable[str]) -> str:
    """``text`` with every occurrence of the given secret values replaced (longest first)."""
    for value in sorted(values, key=len, reverse=True):
        if value:
            text = text.replace(value, REDACTED)
    return text
