"""What a run folder holds, shared by the run that writes it and the tools that read it: the names of its
files (names.py) and summary.json, the run's manifest of record (summary.py)."""
