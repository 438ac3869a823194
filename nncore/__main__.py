"""python -m nncore demo | config"""
import argparse
import math
import sys
import time

import nncore as nn


def sparkline(values, width=60):
    """The loss curve, log scale, as one line of block characters (high = large loss)."""
    blocks = "▁▂▃▄▅▆▇█"
    step = max(1, len(values) // width)
    vals = [math.log(max(v, 1e-12)) for v in values[::step]]
    lo, hi = min(vals), max(vals)
    span = (hi - lo) or 1.0
    return "".join(blocks[int((v - lo) / span * (len(blocks) - 1))] for v in vals)


def demo(args):
    """Train 2-64-3 (ReLU) on the three-class spiral, every step in the compiled kernels."""
    X, y = nn.datasets.spiral(n_per_class=200, n_classes=3, seed=args.seed)
    model = nn.MLP([2, 64, 3], activation="relu", seed=args.seed, dtype="float32")
    print(f"nncore {nn.__version__}: {model} on the spiral ({len(X)} points, 3 classes)")
    t0 = time.perf_counter()
    history = model.fit(X, y, loss="softmax_cross_entropy",
                        optimizer=nn.optim.SGD(lr=0.3, momentum=0.9),
                        epochs=args.epochs, batch_size=32)
    seconds = time.perf_counter() - t0
    acc = model.evaluate(X, y)["accuracy"]
    print(f"trained {args.epochs} epochs in {seconds:.2f} s "
          f"({args.epochs * len(X) / seconds:,.0f} samples/s, {nn.get_num_threads()} threads)")
    print(f"loss {history['loss'][0]:.3f} -> {history['loss'][-1]:.4f}   (log scale) {sparkline(history['loss'])}")
    print(f"training accuracy {acc:.1%} (a linear classifier gets about 50%)")
    return 0 if acc > 0.9 else 1


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m nncore")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="train a small network on the spiral")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    sub.add_parser("config", help="print the build configuration")
    args = parser.parse_args(argv)
    if args.command == "config":
        nn.show_config()
        return 0
    return demo(args)


if __name__ == "__main__":
    sys.exit(main())
