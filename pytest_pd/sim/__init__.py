"""Simulated SGLang workers for pytest-pd.

``python -m pytest_pd.sim`` is a drop-in for ``python -m sglang.launch_server``: a real aiohttp
server speaking SGLang's worker API (health, model/server info, /generate, /v1/completions, PD
bootstrap) whose timing comes from :mod:`pytest_pd.sim.model`. Standalone: it imports nothing from
the rest of pytest_pd, and shares no code with the workload client.

  cli          the command line (sglang.launch_server's flags plus ``--sim-*``), main
  app          the routes, the prefill's bootstrap server, serving until SIGTERM
  worker       one worker's parts wired together; admission; a request's life cycle by role
  scheduler    the prefill and decode loops, paced in wall time over the timing model
  kv           KV hand-off between prefill and decode (bootstrap rooms)
  faults       faults on demand (``--sim-fault``)
  sglang_api   /generate;  openai_api  /v1/completions, /v1/chat/completions
  info_api     health, model/server info, load, flush, /metrics, /sim/trace
  serving      what both API dialects do around a request; wire  compact JSON, error body
  request, vocab, clock, model_dir, log    a request; the tokens; the clocks; the model folder
  model        the pure timing model;  closed_loop  a whole run as a discrete-event simulation
  metrics      Prometheus metrics under SGLang's names
  engine       the simulator as a pytest-pd engine plug-in (harness side, not the server)
"""
