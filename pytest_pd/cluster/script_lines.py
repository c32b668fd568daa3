"""The launch lines of a shell script or a markdown page, as a team pastes them by hand: ``export``
lines, ``python -m MODULE …`` lines (continued with backslashes, prefixed with ``nohup``, inline
``VAR=value`` or ``ssh HOST '…'``, followed by redirections or ``&``), and which host each runs on.

Where a line runs is said, in this order of precedence, by the ``ssh`` it is wrapped in; by a
comment right above it (``# prefill-0 on qjhs0 (172.31.0.5)`` as ``pytest-pd commands`` writes,
``# on qjhs0``, ``# host: qjhs0``, ``# qjhs0 (172.31.0.5)``); in markdown, by a host in
parentheses on the last line of text above its code block (``**Prefill node (qjhs0)**:``).
Pure: text in, :class:`Script` out; a line that cannot be placed raises :class:`ScriptError`
naming it.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

_FENCE = re.compile(r"^\s*(```|~~~)")
_HOST = r"([A-Za-z0-9][A-Za-z0-9_.-]*)"
_ADDRESS = r"\(([0-9A-Za-z:.\[\]-]+)\)"
_COMMENT_HOSTS = (
    re.compile(rf"^#.*\bon {_HOST}(?: {_ADDRESS})?\s*$"),
    re.compile(rf"^#\s*host:\s*{_HOST}\s*$"),
    re.compile(rf"^#\s*{_HOST} {_ADDRESS}\s*$"),
)
_PROSE_HOST = re.compile(rf"\({_HOST}\)")
_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_HARMLESS = frozenset({"cd", "sleep", "echo", "wait", "set", "mkdir", "true"})
_SSH_VALUE_OPTIONS = frozenset("bcDEeFIiJLlmOopQRSWw")
_SEPARATORS = ("&", "|", ";", "&&", "||")


class ScriptError(ValueError):
    """A launch line that cannot be read, with where it is (``line``, 1-based)."""

    def __init__(self, line: int, text: str, problem: str) -> None:
        super().__init__(f"line {line}: {problem}: {text.strip()[:160]}")
        self.line = line


@dataclass
class Launch:
    """One ``python -m MODULE args`` line: where it runs (``host``, its ``address`` when the
    script says), the interpreter, its own environment and its line number."""

    line: int
    python: str
    module: str
    args: list[str]
    host: str | None = None
    address: str | None = None
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Script:
    env: dict[str, str] = field(default_factory=dict)  # exported, in order
    launches: list[Launch] = field(default_factory=list)


def _blocks(text: str) -> list[tuple[int, list[str], str | None]]:
    """(first line number, lines, the prose line above) of each code block of a markdown page, or
    the whole text as one block when it has no fences."""
    lines = text.splitlines()
    if not any(_FENCE.match(line) for line in lines):
        return [(1, lines, None)]
    blocks: list[tuple[int, list[str], str | None]] = []
    prose: str | None = None
    inside: list[str] | None = None
    start = 0
    for number, line in enumerate(lines, 1):
        if _FENCE.match(line):
            if inside is None:
                inside, start = [], number + 1
            else:
                blocks.append((start, inside, prose))
                inside, prose = None, None
        elif inside is not None:
            inside.append(line)
        elif line.strip():
            prose = line
    return blocks


def _logical(lines: list[str], first: int) -> list[tuple[int, str]]:
    """Lines with their backslash continuations joined, numbered by their first line."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = first
    for number, line in enumerate(lines, first):
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending.append(line.rstrip()[:-1])
            continue
        pending.append(line)
        out.append((start, " ".join(part.strip() for part in pending)))
        pending = []
    if pending:
        out.append((start, " ".join(part.strip() for part in pending)))
    return out


def _comment_host(comment: str) -> tuple[str, str | None] | None:
    for pattern in _COMMENT_HOSTS:
        m = pattern.match(comment.strip())
        if m:
            return m.group(1), m.group(2) if m.lastindex and m.lastindex > 1 else None
    return None


def _unwrap_ssh(words: list[str]) -> tuple[str | None, list[str]]:
    """``ssh [options] [user@]HOST COMMAND…`` → (HOST, the command's words); (None, words) else."""
    if not words or words[0] != "ssh":
        return None, words
    i = 1
    while i < len(words) and words[i].startswith("-"):
        i += 2 if words[i][-1] in _SSH_VALUE_OPTIONS and len(words[i]) == 2 else 1
    if i >= len(words) - 1:
        return None, words
    host = words[i].rsplit("@", 1)[-1]
    rest = words[i + 1 :]
    return host, shlex.split(rest[0]) if len(rest) == 1 else rest


def _commands(words: list[str]) -> list[list[str]]:
    """The commands of one line (``cd /srv && nohup python … > log 2>&1 &``): split at ``&&``,
    ``||``, ``;``, ``|`` and ``&``, their redirections dropped."""
    out: list[list[str]] = [[]]
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in _SEPARATORS:
            out.append([])
        elif word in (">", ">>", "<", "2>", "1>", "&>", "2>>"):
            skip = True  # and the file it names
        elif not word.startswith((">", "<", "1>", "2>", "&>")):
            out[-1].append(word)
    return [c for c in out if c]


def _strip(words: list[str]) -> tuple[dict[str, str], list[str]]:
    """Inline ``VAR=value`` and ``env``/``nohup``/``exec`` before the program."""
    env: dict[str, str] = {}
    i = 0
    while i < len(words) and (words[i] in ("nohup", "env", "exec") or _ASSIGN.match(words[i])):
        if _ASSIGN.match(words[i]):
            key, _, value = words[i].partition("=")
            env[key] = value
        i += 1
    return env, words[i:]


def read_script(text: str) -> Script:
    script = Script()
    for first, lines, prose in _blocks(text):
        prose_host = _PROSE_HOST.search(prose) if prose else None
        hint: tuple[str, str | None] | None = None
        for number, line in _logical(lines, first):
            stripped = line.strip()
            if not stripped:
                hint = None
                continue
            if stripped.startswith("#"):
                hint = _comment_host(stripped) or hint
                continue
            try:
                words = shlex.split(stripped, comments=True)
            except ValueError as exc:
                raise ScriptError(number, line, f"cannot split it as the shell would ({exc})") from None
            if words[:1] == ["export"]:
                for word in words[1:]:
                    key, sep, value = word.partition("=")
                    if not sep:
                        raise ScriptError(number, line, f"export of {key} without a value")
                    script.env[key] = value
                continue
            ssh_host, words = _unwrap_ssh(words)
            for command in _commands(words):
                env, command = _strip(command)
                if not command or command[0] in _HARMLESS:
                    continue
                if len(command) < 3 or command[1] != "-m" or not re.search(r"python[0-9.]*$", command[0]):
                    raise ScriptError(
                        number, line, "not a launch line pytest-pd can place (expected `python -m MODULE …`)"
                    )
                host, address = hint or (None, None)
                if ssh_host:  # where it runs; a comment above may still say that host's address
                    host, address = ssh_host, address if host == ssh_host else None
                if host is None and prose_host:
                    host = prose_host.group(1)
                script.launches.append(
                    Launch(number, command[0], command[2], command[3:], host, address, env)
                )
            hint = None
    return script
