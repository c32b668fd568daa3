"""Simulated SGLang workers for pytest-pd.

``python -m pytest_pd.sim`` is a drop-in for ``python -m sglang.launch_server``: a real aiohttp
server speaking SGLang's worker API (health, model/server info, /generate, /v1/completions, PD
bootstrap) whose timing comes from :mod:`pytest_pd.sim.model`. Standalone: it imports nothing from
the rest of pytest_pd, and shares no code with the workload client.
"""
