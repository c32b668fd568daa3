"""Judging runs: the metric catalog, threshold bounds, bootstrap intervals, comparisons."""
