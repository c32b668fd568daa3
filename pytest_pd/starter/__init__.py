"""What ``pytest-pd init`` writes into a team's repository (templates as package data)."""
