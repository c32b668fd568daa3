"""The nightly history: a metric's series over the stored runs of one cluster and workload
(``series.py``), its change points (``changepoints.py``, Apache Otava's E-divisive means), what
changed in the recorded facts at each (``changes.py``), and the verdict a session draws from them
(``verdict.py``). Pure apart from ``cli.py`` (``pytest-pd history``)."""
