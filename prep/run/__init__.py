"""A run's lifecycle, step by step: list and label, scan, plan, claim the output folder, write the shards,
then the run-level files and summary.json. prep/pipeline.py strings these steps together."""
