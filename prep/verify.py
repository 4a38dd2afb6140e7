"""`python -m prep.verify` and `from prep import verify`: the public name of prep/tools/verify.py (the prep-verify
command), where the README and prep's own messages put it."""

import sys

from prep.tools.verify import *  # noqa: F401,F403
from prep.tools.verify import main

if __name__ == "__main__":
    sys.exit(main())
