"""The example cluster files (``clusters/`` of the repository, shipped inside the package) and the
simulated model they name: ``--cluster=sim-pp2`` works from any folder."""
