"""python -m nncore: the command line of nncore.cli (train, evaluate, predict, info,
config, bench, demo), the same as the `nncore` console script."""
import sys

from nncore.cli import main

if __name__ == "__main__":
    sys.exit(main())
