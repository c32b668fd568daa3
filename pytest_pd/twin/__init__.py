"""The digital twin: timing-model profiles (``profile.py``), runs as the model sees them
(``observed.py``), and fitting a profile to stored runs (``calibrate.py``)."""
