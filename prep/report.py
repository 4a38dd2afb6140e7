"""`python -m prep.report` and `from prep import report`: the public name of prep/tools/report.py (the prep-report
command), where the README and prep's own messages put it."""

import sys

from prep.tools.report import *  # noqa: F401,F403
from prep.tools.report import main

if __name__ == "__main__":
    sys.exit(main())
