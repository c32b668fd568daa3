"""Building command lines: one flag and its value, as engines and routers render them."""

from __future__ import annotations

from collections.abc import Collection, Sequence


def flag(argv: list[str], name: str, value: object) -> None:
    """Append ``name value`` (``name`` alone for True; nothing for None or False)."""
    if value is None or value is False:
        return
    argv.append(name)
    if value is not True:
        argv.append(str(value))


def read_flags(
    args: Sequence[str], known: Collection[str], switches: Collection[str] = ()
) -> list[tuple[str | None, str | None]]:
    """A command line read back, the inverse of :func:`flag`: ``(name, value)`` for each flag in
    ``known`` (``--name value`` or ``--name=value``; value None for one of ``switches`` given
    alone), ``(None, arg)`` for every other argument, kept as it was. Raises ``ValueError`` for a
    known flag that is not a switch and has no value."""
    out: list[tuple[str | None, str | None]] = []
    i = 0
    while i < len(args):
        name, value = args[i], None
        if name.startswith("--") and "=" in name:
            name, value = name.split("=", 1)
        i += 1
        if name not in known:
            out.append((None, args[i - 1]))
            continue
        if value is None and name not in switches:
            if i >= len(args) or args[i].startswith("--"):
                raise ValueError(f"{name} without its value")
            value, i = args[i], i + 1
        out.append((name, value))
    return out
