"""Reading a cluster file that may be hostile, in bounded time and memory whatever it holds.

A cluster file is a few kB of YAML. Anything else — a folder, a FIFO, a device, a huge or binary
file, an alias bomb ("billion laughs"), thousands of nested brackets, a number of 5000 digits — gets
one :class:`~pytest_pd.errors.ClusterFileError` naming the file (and line), what is wrong and what
to do, before it can use much memory or time:

- :func:`read_text` opens without blocking (a FIFO would block ``open()`` forever), refuses what is
  not a regular file, reads at most :data:`MAX_FILE_BYTES` and decodes UTF-8;
- :func:`load` composes the YAML while counting every parser event as the composer consumes it:
  nesting depth, scalar length, number length and the values the document holds once every alias
  is expanded. PyYAML's parser is a state machine, so a limit is hit before the recursive composer
  or anything downstream (line index, pydantic, reprs of the data) can expand shared nodes or
  recurse deeply.
"""

from __future__ import annotations

import codecs
import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pytest_pd.errors import ClusterFileError

Loc = tuple[str | int, ...]

# Real cluster files are 1-3 kB with a few hundred values, nested 4-6 levels.
MAX_FILE_BYTES = 256 * 1024  # also keeps the pure-Python parse of the largest file under 0.5 s
MAX_DEPTH = 64
MAX_SCALAR_CHARS = 10_000
MAX_NUMBER_CHARS = 100  # ports and sizes have a few digits; int() refuses 4300+ anyway
MAX_VALUES = 20_000  # after alias expansion; the pure-Python scanner reads 20 000 in ~0.3 s

MISSING = "does not exist"  # what path_problem says of a path with nothing there

_NUMBER_TAGS = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
_VALUE_KINDS = {
    "tag:yaml.org,2002:int": "integer",
    "tag:yaml.org,2002:float": "number",
    "tag:yaml.org,2002:timestamp": "date",
    "tag:yaml.org,2002:bool": "boolean",
}
_BOMS = [
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
]  # 32 first: same prefix


# --------------------------------------------------------------------------- the file


def _kind_of(mode: int) -> str | None:
    """What a file that is not a regular file is, in words; None for a regular file."""
    kinds = [
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ]
    for test, kind in kinds:
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) else "not a regular file"


def path_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a cluster file, as the end of a sentence starting with the path
    ("does not exist", "is a directory", …); None for a regular file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            return f"is a symbolic link to {os.readlink(path)}, which does not exist"
        return MISSING
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link that loops (it points back to itself)"
        if exc.errno == errno.EACCES:
            return (
                "cannot be looked at: permission denied on a folder of its path (`ls -ld` "
                "each folder to find which)"
            )
        if exc.errno == errno.ENOTDIR:
            return "does not exist (a part of its path is a file, not a folder)"
        return f"cannot be looked at ({exc.strerror})"
    kind = _kind_of(mode)
    return f"is {kind}, not a file" if kind else None


def _open_regular(path: Path) -> int:
    """A read descriptor of ``path``, known to be a regular file. O_NONBLOCK: opening a FIFO
    must not wait for a writer (it is refused right after, by fstat)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise ClusterFileError(_open_failure(path, exc)) from None
    kind = _kind_of(os.fstat(fd).st_mode)
    if kind:
        os.close(fd)
        raise ClusterFileError(
            f"cluster file {path} is {kind}, not a file; pass the path of a YAML cluster file."
        )
    return fd


def _open_failure(path: Path, exc: OSError) -> str:
    if exc.errno == errno.EACCES:
        return (
            f"cannot read cluster file {path}: permission denied. Make it readable "
            f"(`chmod u+r {path}`) or run as a user who may read it."
        )
    problem = path_problem(path)
    if problem:
        return f"cannot read cluster file {path}: it {problem}; check the path."
    return f"cannot read cluster file {path}: {exc.strerror or exc}."


def _too_big(where: str, size: str) -> ClusterFileError:
    return ClusterFileError(
        f"{where}: the file has {size}, more than the {MAX_FILE_BYTES:,} bytes "
        f"({MAX_FILE_BYTES // 1024} KiB) a cluster file may have (they are a few kB); is this the "
        "right file?"
    )


def read_text(path: Path) -> str:
    """The text of the cluster file ``path``: a regular file of at most MAX_FILE_BYTES of UTF-8."""
    fd = _open_regular(path)
    with os.fdopen(fd, "rb") as fh:
        size = os.fstat(fd).st_size
        if size > MAX_FILE_BYTES:
            raise _too_big(str(path), f"{size:,} bytes")
        data = fh.read(MAX_FILE_BYTES + 1)  # st_size may lie (/proc) or the file may grow
    if len(data) > MAX_FILE_BYTES:
        raise _too_big(str(path), f"more than {MAX_FILE_BYTES:,} bytes")
    return decode(data, str(path))


def _line_at(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def decode(data: bytes, where: str) -> str:
    """``data`` as UTF-8 text, or an error saying where it is not."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            raise ClusterFileError(
                f"{where}:1: starts with a {encoding} byte order mark: the file "
                f"is in {encoding}; save it as UTF-8."
            )
    nul = data.find(b"\0")
    if nul >= 0:
        raise ClusterFileError(
            f"{where}:{_line_at(data, nul)}: a NUL byte at byte offset {nul}: this is a binary file "
            "(or UTF-16/32 text), not a UTF-8 YAML cluster file; check the path."
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 4].hex(" ")
        raise ClusterFileError(
            f"{where}:{_line_at(data, exc.start)}: not UTF-8 text (byte offset {exc.start}: {bad}); "
            "a cluster file is UTF-8 YAML. Check the path, or save the file as UTF-8."
        ) from None


# --------------------------------------------------------------------------- bounded YAML


@dataclass
class _Open:
    """A collection the parser is inside of."""

    anchor: str | None
    values_before: int  # the document's values before this collection started
    deepest: int  # the deepest nesting level reached inside it so far


@dataclass
class _Bounds:
    """Sees every parser event once, in order, and raises as soon as the document, with every
    alias expanded, would nest too deep, hold too long a scalar or too many values."""

    where: str
    values: int = 0  # values so far, each alias counted as all the values of the node it repeats
    inside: list[_Open] = field(default_factory=list)  # the open collections, outermost first
    anchored: dict[str, tuple[int, int]] = field(default_factory=dict)  # anchor: values, levels

    def see(self, event: yaml.Event, tag: str | None = None) -> None:
        if isinstance(event, yaml.CollectionStartEvent):
            self._start(event)
        elif isinstance(event, yaml.CollectionEndEvent):
            self._end()
        elif isinstance(event, yaml.ScalarEvent):
            self._scalar(event, tag)
        elif isinstance(event, yaml.AliasEvent):
            self._alias(event)

    def _start(self, event: yaml.CollectionStartEvent) -> None:
        level = len(self.inside) + 1
        self._reach(level, event, "")
        self._add(1, event)
        self.inside.append(_Open(event.anchor, self.values - 1, level))

    def _end(self) -> None:
        closing = self.inside.pop()
        level = len(self.inside) + 1
        if closing.anchor is not None:
            self.anchored[closing.anchor] = (self.values - closing.values_before, closing.deepest - level + 1)
        if self.inside:
            self.inside[-1].deepest = max(self.inside[-1].deepest, closing.deepest)

    def _scalar(self, event: yaml.ScalarEvent, tag: str | None) -> None:
        line = _line(event)
        if len(event.value) > MAX_SCALAR_CHARS:
            raise ClusterFileError(
                f"{self.where}:{line}: a value of {len(event.value):,} characters, more than the "
                f"{MAX_SCALAR_CHARS:,} allowed; cluster values are names, paths and numbers. Shorten "
                "it, or put the data in a file and give its path."
            )
        if tag in _NUMBER_TAGS and len(event.value) > MAX_NUMBER_CHARS:
            raise ClusterFileError(
                f"{self.where}:{line}: a number of {len(event.value):,} characters, more than the "
                f"{MAX_NUMBER_CHARS} allowed (ports, sizes and timeouts have a few digits). Fix the "
                "value, or quote it if it is text."
            )
        self._add(1, event)
        if event.anchor is not None:
            self.anchored[event.anchor] = (1, 0)

    def _alias(self, event: yaml.AliasEvent) -> None:
        if any(o.anchor == event.anchor for o in self.inside):
            raise ClusterFileError(
                f"{self.where}:{_line(event)}: alias *{event.anchor} is inside the node &"
                f"{event.anchor} it repeats, so that node would contain itself without end; use "
                "the alias outside that node."
            )
        values, levels = self.anchored.get(event.anchor or "", (1, 0))  # unknown: the composer says so
        self._reach(len(self.inside) + levels, event, f" (counting what *{event.anchor} repeats)")
        self._add(values, event)

    def _reach(self, level: int, event: yaml.Event, how: str) -> None:
        if level > MAX_DEPTH:
            raise ClusterFileError(
                f"{self.where}:{_line(event)}: nested {level} levels deep{how}, more than the "
                f"{MAX_DEPTH} allowed (a cluster file needs about 5). Look for runaway brackets "
                "or indentation there."
            )
        if self.inside:
            self.inside[-1].deepest = max(self.inside[-1].deepest, level)

    def _add(self, values: int, event: yaml.Event) -> None:
        self.values += values
        if self.values > MAX_VALUES:
            raise ClusterFileError(
                f"{self.where}:{_line(event)}: more than {MAX_VALUES:,} values by this line, each "
                "alias *name counted as the whole node &name it repeats; a cluster file holds a few "
                "hundred. An alias bomb? Use fewer, smaller aliases."
            )


def _line(event: yaml.Event) -> int:
    return event.start_mark.line + 1 if event.start_mark is not None else 1


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer hands every event to :class:`_Bounds` first, and whose
    constructor turns a value Python cannot convert (a bad date, a huge integer) into an error
    naming its line."""

    def __init__(self, text: str, where: str) -> None:
        super().__init__(text)
        self.bounds = _Bounds(where)

    def get_event(self) -> yaml.Event:
        event: yaml.Event = super().get_event()  # type: ignore[no-untyped-call]
        tag = None
        if isinstance(event, yaml.ScalarEvent) and len(event.value) > MAX_NUMBER_CHARS:
            tag = event.tag  # the tag the composer will give it: is it a number?
            if tag is None or tag == "!":
                tag = self.resolve(
                    yaml.ScalarNode,
                    event.value,  # type: ignore[no-untyped-call]
                    event.implicit,
                )
        self.bounds.see(event, tag)
        return event

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ArithmeticError, ValueError, LookupError, AttributeError, TypeError) as exc:
            # PyYAML's converters fail in many ways on a value that does not fit its (explicit)
            # tag: `!!timestamp host`, `!!bool maybe`, a 2024-13-01 date
            kind = _VALUE_KINDS.get(node.tag, node.tag)
            shown = repr(node.value)[:60]
            why = f" ({exc})" if isinstance(exc, (ArithmeticError, ValueError)) else ""
            raise ClusterFileError(
                f"{self.bounds.where}:{node.start_mark.line + 1}: {shown} is not a valid {kind}"
                f"{why}; fix it, or quote it if it is meant as text."
            ) from None


@dataclass(frozen=True)
class Document:
    """A parsed cluster file: its data and where each part of it is."""

    data: Any
    lines: dict[Loc, int]  # location (keys and list indices) -> line
    duplicate_keys: list[tuple[int, Loc, str]]  # (line, location, message)

    def line_of(self, loc: Loc) -> int:
        """The line of ``loc``, else of its nearest enclosing part that has one."""
        while loc and loc not in self.lines:
            loc = loc[:-1]
        return self.lines.get(loc, 1)


def load(text: str, where: str) -> Document:
    """Parse ``text`` (the cluster file ``where``) within the limits above."""
    if len(text) > MAX_FILE_BYTES:
        raise _too_big(where, f"{len(text):,} characters")
    try:
        return _load(text, where)
    except yaml.reader.ReaderError as exc:
        raise ClusterFileError(_unprintable(text, where, exc)) from None
    except yaml.YAMLError as exc:
        raise ClusterFileError(_syntax_error(where, exc)) from None
    except RecursionError:  # last resort: the depth bound should make this unreachable
        raise ClusterFileError(
            f"{where}: nests too deeply to read; a cluster file needs about 5 "
            "levels. Look for runaway brackets or indentation."
        ) from None
    except ValueError as exc:  # last resort: conversions are caught per value, with their line
        raise ClusterFileError(
            f"{where}: a value cannot be read ({exc}); fix it, or quote it if it is meant as text."
        ) from None


def _load(text: str, where: str) -> Document:
    loader = _BoundedLoader(text, where)
    try:
        root = loader.get_single_node()
        lines: dict[Loc, int] = {}
        duplicates: list[tuple[int, Loc, str]] = []
        if root is not None:
            _index_lines(root, (), lines, duplicates)  # before constructing: merges edit nodes
        data = loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()
    return Document(data, lines, duplicates)


def _syntax_error(where: str, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    line = f":{mark.line + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc)
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context:  # e.g. "found duplicate anchor 'x'; first occurrence" + "second occurrence"
        seen_at = f" (line {context_mark.line + 1})" if context_mark is not None else ""
        problem = f"{context}{seen_at}: {problem}"
    return (
        f"{where}{line}: not valid YAML ({problem}). Fix the syntax at that line; "
        "`python -c 'import yaml,sys; yaml.safe_load(open(sys.argv[1]))' FILE` checks it."
    )


def _unprintable(text: str, where: str, exc: yaml.reader.ReaderError) -> str:
    line = text.count("\n", 0, exc.position) + 1
    return (
        f"{where}:{line}: control character U+{exc.character:04X}, which YAML does not allow; "
        "remove it (is this a text file?)."
    )


def _index_lines(
    node: yaml.Node, loc: Loc, lines: dict[Loc, int], duplicates: list[tuple[int, Loc, str]]
) -> None:
    """Record the line of every location under ``node``, and every key set twice. Recursive,
    and walks aliased nodes once per use: :class:`_Bounds` has capped both."""
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # a list or mapping as a key: constructing the data refuses it
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                duplicates.append(
                    (line, loc + (key,), f"duplicate key (first set on line {seen[key]}); keep one of them")
                )
            seen[key] = line
            _index_lines(value_node, loc + (key,), lines, duplicates)
            lines[loc + (key,)] = line
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, loc + (i,), lines, duplicates)
