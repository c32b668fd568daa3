"""The results store's index: a summary of every stored run (``summary.py``) kept in an SQL
database (SQLite in the results folder by default, PostgreSQL for a team) so that history and
baseline look-ups never parse every JSON file. The JSON files (``pytest_pd/results.py``) stay the
record of truth."""
