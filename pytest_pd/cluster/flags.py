"""Building command lines: one flag and its value, as engines and routers render them."""

from __future__ import annotations


def flag(argv: list[str], name: str, value: object) -> None:
    """Append ``name value`` (``name`` alone for True; nothing for None or False)."""
    if value is None or value is False:
        return
    argv.append(name)
    if value is not True:
        argv.append(str(value))
