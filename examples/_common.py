"""What the examples share: matplotlib on the Agg backend (files, no window), the
--out/--fast arguments, and writing a figure to PNG."""
import argparse
import sys
from pathlib import Path

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit('this example draws with matplotlib: pip install -e ".[plot]" in the nncore '
             'checkout (or pip install matplotlib)')

__all__ = ["arguments", "plt", "save"]


def arguments(doc, argv=None,
              fast="accepted like the other examples; this one is fast anyway"):
    """--out DIR (default examples/out) and --fast, parsed from argv."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out",
                        help="folder for the PNGs (default examples/out)")
    parser.add_argument("--fast", action="store_true", help=fast)
    return parser.parse_args(argv)


def save(fig, out, name):
    """Write fig to out/name (the folder made if needed), close it, say where."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")
