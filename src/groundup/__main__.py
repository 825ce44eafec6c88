"""`python -m groundup ...`: the same as the `groundup` command (and what `torchrun -m groundup train` runs)."""

import sys

from groundup.cli import main

if __name__ == "__main__":
    sys.exit(main())
