"""`from prep import summary`: the public name of prep/runfiles/summary.py (summary.load, summary.build ...),
where the README and users' code import it from."""

from prep.runfiles.summary import *  # noqa: F401,F403
