"""Hostile server: how the client classifies each misbehaviour of tests/helpers/hostile_server.py, how long
it takes, and how much memory the client needs for it.

    .venv/bin/python benchmarks/hostile_server.py [--timeout 3]   # a table; nothing asserted

Each case (and dialect) runs once, as a one-request workload in its own child process on the
production path (``run_workload_sync``, uvloop), against the server in this process. Columns:
outcome (``ok`` or the failed kind), the message's first words (URL left out), time to classify
(the request's start to its end), and the client's memory during the request: peak RSS over the
RSS after imports, and the ``tracemalloc`` peak (which counts memory orjson reserves but never
touches, up to ~12x a decoded line).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.hostile_server import CASES, HostileServer, probe  # noqa: E402

MESSAGE_WORDS = 14
URL = re.compile(r"http://127\.0\.0\.1:\d+")
COLUMNS = (
    "case",
    "api",
    "outcome",
    "message (first words)",
    "time to classify s",
    "peak RSS growth MB",
    "tracemalloc peak MB",
)


def first_words(message: str) -> str:
    words = URL.sub("<url>", message).split()
    text = " ".join(words[:MESSAGE_WORDS])
    return text + (" …" if len(words) > MESSAGE_WORDS else "")


def row(case_name: str, api: str, measured: dict[str, Any]) -> tuple[str, ...]:
    rec = measured["record"]
    return (
        case_name,
        api,
        rec["error_kind"] or "ok",
        first_words(rec["error"]),
        f"{rec['t_end'] - rec['t_start']:.2f}",
        f"{measured['rss_growth'] / 2**20:.1f}",
        f"{measured['traced_peak'] / 2**20:.1f}",
    )


def print_table(rows: list[tuple[str, ...]]) -> None:
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "|".join("---" for _ in COLUMNS) + "|")
    for cells in rows:
        print("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |", flush=True)


async def main(timeout_s: float) -> None:
    rows = []
    async with HostileServer() as server:
        for case in CASES.values():
            for api in case.apis:
                rows.append(row(case.name, api, await probe(server.url, api, case.name, timeout_s)))
    print(f"request timeout {timeout_s:g} s\n")
    print_table(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=3.0, help="request timeout (s)")
    asyncio.run(main(parser.parse_args().timeout))
