"""pytest hooks (filled in below)."""
