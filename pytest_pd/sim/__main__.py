"""``python -m pytest_pd.sim``: a simulated SGLang worker (same flags as sglang.launch_server)."""

import sys

from pytest_pd.sim.cli import main

if __name__ == "__main__":
    sys.exit(main())
