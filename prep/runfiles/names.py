"""The files prep keeps in a run folder beside the shards, by name."""

MANIFEST = ".prep-manifest"
SUMMARY = "summary.json"
LABELS_CSV = "labels.csv"
REPORT = "report.html"
LOCK = ".prep-lock"
LOG = "prep.log"
HYDRA = ".hydra"
PLAN = "plan.json"  # what the run will write, written before the first shard (and by dry_run=true)
# Written by every run beside its shards; a shard pattern may not produce these names.
RESERVED = frozenset({MANIFEST, SUMMARY, LABELS_CSV, REPORT, LOCK, LOG, HYDRA, PLAN})
# The run's own records of itself, never counted as "files in the way" (a dry run leaves plan.json, .hydra/
# and prep.log in a folder a real run may then use; that run writes its own).
BOOKKEEPING = frozenset({LOCK, LOG, HYDRA, PLAN})
