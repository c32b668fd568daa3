"""The simulated worker's log lines (stdout, as the process's log file collects them)."""


def log(msg: str) -> None:
    print(f"[pytest-pd sim] {msg}", flush=True)
