"""`python -m prep.readbench` and `from prep import readbench`: the public name of prep/tools/readbench.py (the prep-readbench
command), where the README and prep's own messages put it."""

import sys

from prep.tools.readbench import *  # noqa: F401,F403
from prep.tools.readbench import main

if __name__ == "__main__":
    sys.exit(main())
