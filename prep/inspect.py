"""`python -m prep.inspect` and `from prep import inspect`: the public name of prep/tools/inspect.py (the prep-inspect
command), where the README and prep's own messages put it."""

import sys

from prep.tools.inspect import *  # noqa: F401,F403
from prep.tools.inspect import main

if __name__ == "__main__":
    sys.exit(main())
