"""The nncore command line: nncore (or python -m nncore) train | evaluate | predict |
info | config | bench | demo.

    nncore demo                                  the digit network, in a few seconds
    nncore train --data moons --layers 2,32,2 --epochs 100 --save moons.npz
    nncore evaluate moons.npz --data moons --seed 1      (a fresh sample)
    nncore predict moons.npz --input points.csv --output labels.csv
    nncore info moons.npz

Data sets (--data): spiral, xor, moons, circles, sine (generated), digits (the 8x8
digits nncore ships), mnist:<folder> (IDX files you downloaded: train-* to train, t10k-*
to evaluate), csv:<file> (numeric, target column --target, default the last).

A problem with the command, its files or its data prints one line,
"nncore: error: ...", on stderr and exits with 2 (usage) or 1 (anything else);
NNCORE_TRACEBACK=1 shows the traceback instead.
"""
import argparse
import inspect
import contextlib
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

import nncore as nn
from nncore import datasets, functional as F, losses as losses_mod
from nncore._threads import MAX_THREADS

PROG = "nncore"
GENERATED = ("spiral", "xor", "moons", "circles", "sine")
DATA_HELP = ("spiral, xor, moons, circles, sine, digits, mnist:<folder> or csv:<file>")
DEFAULT_SAMPLES = {"spiral": 300, "moons": 500, "circles": 500, "sine": 500}
# The CLI's defaults where they differ from the optimizer classes' own
DEFAULT_LR = {"sgd": 0.1}
DEFAULT_MOMENTUM = {"sgd": 0.9}


def _optimizer_classes():
    """{cli name: class} of nncore.optim's optimizers: sgd, adam, rmsprop, ..."""
    return {name.lower(): cls for name, cls in nn.optim.OPTIMIZERS.items()}


def _takes(cls, name):
    return name in inspect.signature(cls).parameters
MAX_DEFAULT_CLASSES = 1000      # more whole-number targets than this look like regression


class CLIError(Exception):
    """A usage problem: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise CLIError(f"{message} (see '{self.prog} --help')")


# ---- argument types -----------------------------------------------------------

def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {value}")
    return value


def _number(minimum=0.0, positive=False, below=None):
    """An argparse type: a finite float >= minimum (> 0 if positive, < below if given)."""
    want = ("> 0" if positive else f">= {minimum:g}" if below is None
            else f"in [{minimum:g}, {below:g})")

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value >= minimum and (value > 0 or not positive)
                and (below is None or value < below)):
            raise argparse.ArgumentTypeError(f"expected a number {want}, got {text!r}")
        return value
    return parse


def _thread_count(text):
    value = _positive_int(text)
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"expected an int from 1 to {MAX_THREADS}, got {value}")
    return value


def _sizes(text):
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        sizes = []
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            f"expected layer sizes >= 1 separated by commas, inputs first and outputs "
            f"last (e.g. 2,100,3), got {text!r}")
    return sizes


def _target(text):
    try:
        return int(text)
    except ValueError:
        return text


# ---- data ---------------------------------------------------------------------

def load_data(spec, *, seed=0, samples=None, target=-1, part="train"):
    """(X, y, description) for a --data value. part "train" or "test" picks the
    MNIST files (train-* or t10k-*); the other sets are the same for both."""
    name, _, arg = spec.partition(":")
    if target != -1 and name != "csv":
        raise CLIError("--target applies to csv:<file> data only")
    if samples is not None and name not in DEFAULT_SAMPLES:
        raise CLIError(f"--samples applies to {', '.join(DEFAULT_SAMPLES)}, not {name}")
    n = samples or DEFAULT_SAMPLES.get(name)
    if name in GENERATED + ("digits",) and arg:
        raise CLIError(f"--data {name} takes no ':' part, got {spec!r}")
    if name == "spiral":
        if n < 3:
            raise CLIError(f"--samples must be >= 3 for the spiral, got {n}")
        X, y = datasets.spiral(n_per_class=n // 3, n_classes=3, seed=seed)
    elif name == "xor":
        X, y = datasets.xor()
    elif name == "moons":
        X, y = datasets.moons(max(n, 2), seed=seed)
    elif name == "circles":
        X, y = datasets.circles(max(n, 2), seed=seed)
    elif name == "sine":
        X, y = datasets.sine(n, seed=seed)
    elif name == "digits":
        X, y = datasets.digits()
    elif name == "mnist":
        if not arg:
            raise CLIError("--data mnist:<folder> needs the folder of the IDX files, "
                           "e.g. mnist:~/data/mnist")
        X, y = datasets.load_mnist(os.path.expanduser(arg), "train" if part == "train" else "t10k")
        name = f"MNIST {'train' if part == 'train' else 't10k'} ({arg})"
    elif name == "csv":
        if not arg:
            raise CLIError("--data csv:<file> needs the file, e.g. csv:data.csv")
        X, y = datasets.load_csv(os.path.expanduser(arg), target=target)
        name = arg
    else:
        hint = ""
        if os.path.exists(spec):
            hint = f"; for a file write csv:{spec} or mnist:{spec}"
        raise CLIError(f"argument --data: unknown data set {spec!r}; choose {DATA_HELP}{hint}")
    kind = (_plural(int(y.max()) + 1, "class", "classes") if _is_labels(y)
            else _plural(1 if y.ndim == 1 else y.shape[1], "target"))
    return X, y, (f"{name}: {_plural(X.shape[0], 'sample')}, "
                  f"{_plural(X.shape[1], 'feature')}, {kind}")


def _plural(n, word, words=None):
    return f"{n:,} {word if n == 1 else words or word + 's'}"


def _is_labels(y):
    return y.ndim == 1 and y.dtype.kind in "iu"


def _split(X, y, fraction, seed):
    """The held-out part train --validation-split makes (and evaluate finds again)."""
    try:
        return datasets.train_test_split(X, y, fraction, seed=seed, stratify=_is_labels(y))
    except ValueError as e:
        raise CLIError(f"argument --validation-split: {e}") from None


def _check_sizes(sizes, X, y, loss):
    if sizes[0] != X.shape[1]:
        raise CLIError(f"--layers starts with {sizes[0]} inputs but the data has "
                       f"{X.shape[1]} features")
    n_out = sizes[-1]
    if loss.name in ("softmax_cross_entropy", "hinge"):
        if not _is_labels(y):
            raise CLIError(f"--loss {loss.name} needs class labels, but the targets are "
                           f"real numbers (try --loss mse)")
        if y.min() < 0:
            raise CLIError(f"class labels must run from 0, but the data holds {int(y.min())} "
                           f"(relabel them 0..k-1, or use --loss mse for numbers)")
        if y.max() >= n_out:
            raise CLIError(f"--layers ends with {n_out} outputs but the data has "
                           f"{int(y.max()) + 1} classes (labels {int(y.min())}..{int(y.max())})")
    elif loss.name == "binary_cross_entropy":
        if ((y != 0) & (y != 1)).any():
            raise CLIError("--loss binary_cross_entropy needs 0/1 targets")
        want = 1 if y.ndim == 1 else y.shape[1]
        if n_out != want:
            raise CLIError(f"--layers must end with {want} output(s) for "
                           f"binary_cross_entropy on this data, not {n_out}")
    else:
        want = 1 if y.ndim == 1 else y.shape[1]
        if n_out != want:
            raise CLIError(f"--layers ends with {n_out} outputs but the data has {want} "
                           f"target column(s)")


def _default_sizes(X, y, loss):
    if loss.name in ("softmax_cross_entropy", "hinge") and _is_labels(y):
        n_out = int(y.max()) + 1
    else:
        n_out = 1 if y.ndim == 1 else y.shape[1]
    return [X.shape[1], 64, n_out]


def _threads(n):
    return nn.threads(n) if n else contextlib.nullcontext()


def _metrics(result):
    parts = [f"loss {result['loss']:.4f}"]
    if "accuracy" in result:
        parts.append(f"accuracy {result['accuracy']:.1%}")
    return ", ".join(parts)


# ---- commands -----------------------------------------------------------------

def cmd_train(args):
    X, y, about = load_data(args.data, seed=args.seed, samples=args.samples,
                            target=args.target)
    if args.loss is None and _is_labels(y) and y.max() >= MAX_DEFAULT_CLASSES:
        raise CLIError(f"the targets are whole numbers up to {int(y.max())}: as class labels "
                       f"that makes {int(y.max()) + 1} classes; pass --loss mse for "
                       f"regression (or --loss softmax_cross_entropy to insist)")
    loss = losses_mod.get(args.loss or ("softmax_cross_entropy" if _is_labels(y) else "mse"))
    sizes = args.layers or _default_sizes(X, y, loss)
    _check_sizes(sizes, X, y, loss)
    cls = _optimizer_classes()[args.optimizer]
    kwargs = {}
    if args.lr is not None or args.optimizer in DEFAULT_LR:
        kwargs["lr"] = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
    if _takes(cls, "momentum"):
        momentum = args.momentum if args.momentum is not None else \
            DEFAULT_MOMENTUM.get(args.optimizer)
        if momentum is not None:
            kwargs["momentum"] = momentum
    elif args.momentum is not None:
        takes = [n for n, c in _optimizer_classes().items() if _takes(c, "momentum")]
        raise CLIError(f"--momentum applies to --optimizer {' or '.join(takes)} "
                       f"({cls.__name__} has no momentum)")
    optimizer = cls(**kwargs)
    if args.save:
        folder = os.path.dirname(os.path.abspath(args.save))
        if not os.path.isdir(folder):
            raise CLIError(f"argument --save: the folder {folder!r} does not exist")
    validation = None
    if args.validation_split:
        X, Xv, y, yv = _split(X, y, args.validation_split, args.seed)
        validation = (Xv, yv)
        about += f" ({X.shape[0]} to train on, {Xv.shape[0]} held out)"
    model = nn.MLP(sizes, activation=args.activation, seed=args.seed, dtype=args.dtype,
                   l2=args.l2)
    print(f"nncore {nn.__version__}: {'-'.join(map(str, sizes))} {args.activation} "
          f"network, {model.n_parameters():,} parameters, {model.dtype.name}")
    print(f"data {about}")
    print(f"{loss.name}, {optimizer!r}, batch {args.batch_size}, "
          f"{_plural(args.epochs, 'epoch')}")
    with _threads(args.threads):
        t0 = time.perf_counter()
        history = model.fit(X, y, loss=loss, optimizer=optimizer, epochs=args.epochs,
                            batch_size=args.batch_size, validation_data=validation,
                            verbose=args.verbose)
        seconds = time.perf_counter() - t0
        done = len(history.epoch)
        print(f"trained {_plural(done, 'epoch')} in {seconds:.2f} s "
              f"({nn.get_num_threads()} threads)" + ("; interrupted" if history.interrupted else ""))
        if done > 1:
            print(f"loss per epoch (log scale) {sparkline(history['loss'])}")
        print(f"train      {_metrics(model.evaluate(X, y))}")
        if validation is not None:
            print(f"validation {_metrics(model.evaluate(*validation))}")
    if args.save:
        model.save(args.save)
        print(f"saved {args.save}")
    return 0


def cmd_evaluate(args):
    model = nn.load(args.model)
    if model.loss is None:
        raise CLIError(f"{args.model}: the model was never trained (its file names no loss)")
    X, y, about = load_data(args.data, seed=args.seed, samples=args.samples,
                            target=args.target, part="test")
    if X.shape[1] != model.n_inputs:
        raise CLIError(f"the data has {_plural(X.shape[1], 'feature')} but the model takes "
                       f"{model.n_inputs}")
    if args.validation_split:
        _, X, _, y = _split(X, y, args.validation_split, args.seed)
        about += f" (the {X.shape[0]} held out by --validation-split {args.validation_split})"
    with _threads(args.threads):
        result = model.evaluate(X, y)
    print(f"data {about}")
    print(_metrics(result))
    return 0


def _read_inputs(path):
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        try:
            X = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            if isinstance(e, FileNotFoundError):
                raise
            raise ValueError(f"{path}: cannot read it as a .npy array ({e})") from None
        if X.ndim == 1:
            X = X.reshape(-1, 1)
        return X
    if ext == ".csv":
        return datasets.load_csv(path, target=None)[0]
    raise CLIError(f"argument --input: {path!r} must be a .csv or .npy file")


def cmd_predict(args):
    out_ext = os.path.splitext(args.output)[1].lower() if args.output else ""
    if args.output and out_ext not in (".csv", ".npy"):
        raise CLIError(f"argument --output: {args.output!r} must end in .csv or .npy "
                       f"(or leave it out for the screen)")
    model = nn.load(args.model)
    if model.loss is None:
        raise CLIError(f"{args.model}: the model was never trained (its file names no loss)")
    X = _read_inputs(args.input)
    if X.ndim != 2 or X.shape[1] != model.n_inputs:
        raise CLIError(f"{args.input}: {X.shape[1] if X.ndim == 2 else X.shape} "
                       f"features per row, but the model takes {model.n_inputs}")
    with _threads(args.threads):
        try:
            out = model.predict_proba(X) if args.proba else model.predict(X)
        except ValueError as e:
            raise ValueError(f"{args.input}: {e}") from None
    if out_ext == ".npy":
        np.save(args.output, out)
    else:
        _write_csv(out, args.output, proba=args.proba)
    if args.output:
        print(f"wrote {out.shape[0]} predictions to {args.output}")
    return 0


def _write_csv(out, path, proba):
    column = out.reshape(out.shape[0], -1)
    k = column.shape[1]
    prefix = "p" if proba else ("label" if out.dtype.kind in "iu" else "output")
    names = [prefix] if k == 1 else [f"{prefix}{j}" for j in range(k)]
    fmt = "%d" if out.dtype.kind in "iu" else "%.9g"
    if path:
        np.savetxt(path, column, fmt=fmt, delimiter=",", header=",".join(names), comments="")
    else:
        np.savetxt(sys.stdout, column, fmt=fmt, delimiter=",", header=",".join(names),
                   comments="")


def cmd_info(args):
    model = nn.load(args.model)
    with np.load(args.model, allow_pickle=False) as npz:    # nn.load checked it
        config = json.loads(str(npz["config"][()]))
    print(f"{args.model}: {config['format']} version {config['format_version']}, "
          f"written by nncore {config['nncore_version']}")
    sizes = [model.n_inputs] + [layer.n_out for layer in model.layers]
    print(f"architecture  {'-'.join(map(str, sizes))}")
    for i, layer in enumerate(model.layers):
        n = layer.weight.size + (layer.bias.size if layer.bias is not None else 0)
        print(f"  layer {i}  {layer.n_in:>5} -> {layer.n_out:<5} {layer.activation:<10} "
              f"{n:>10,} parameters")
    print(f"parameters    {model.n_parameters():,}")
    print(f"dtype         {model.dtype.name}")
    print(f"loss          {model.loss.name if model.loss is not None else '(not trained)'}")
    opt = model.optimizer
    print(f"optimizer     {opt!r}, {opt.epoch} epochs trained" if opt is not None
          else "optimizer     (not trained)")
    print(f"l2            {model.l2:g}")
    print(f"seed          {model.seed}")
    return 0


def cmd_config(args):
    nn.show_config()
    return 0


def bench_script():
    """bench/train.py in the source tree nncore was installed from (editable installs
    and checkouts), or None."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(nn.__file__))),
                        "bench", "train.py")
    return path if os.path.isfile(path) else None


def cmd_bench(args):
    script = bench_script()
    if script is None:
        raise RuntimeError("no bench/train.py next to the nncore sources: the benchmarks "
                           "come with a source checkout (git clone, then pip install -e .)")
    extra = list(args.args)
    if "--full" in extra:                 # the bench/WORKLOADS.md sizes (several minutes)
        extra.remove("--full")
    elif "--quick" not in extra:
        extra.append("--quick")
    print(f"running {script} {' '.join(extra)}", flush=True)
    return subprocess.call([sys.executable, script, *extra])


# ---- the demo -----------------------------------------------------------------

BLOCKS = "▁▂▃▄▅▆▇█"
ASCII_BLOCKS = "_.-~=*#@"


def _can_print(text, stream=None):
    encoding = getattr(stream or sys.stdout, "encoding", None) or "ascii"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def sparkline(values, width=60, blocks=None):
    """The loss curve, log scale, as one line of block characters (high = large loss);
    ASCII characters where stdout cannot show the blocks."""
    if blocks is None:
        blocks = BLOCKS if _can_print(BLOCKS) else ASCII_BLOCKS
    values = list(values)
    if not values:
        return ""
    step = max(1, math.ceil(len(values) / width))
    vals = [math.log(max(v, 1e-12)) if math.isfinite(v) else 0.0 for v in values[::step]]
    lo, hi = min(vals), max(vals)
    span = (hi - lo) or 1.0
    return "".join(blocks[int((v - lo) / span * (len(blocks) - 1))] for v in vals)


def digit_art(images, titles, shades=None):
    """8x8 images in [0, 1] side by side, two characters a pixel, a title under each."""
    if shades is None:
        shades = " ░▒▓█" if _can_print(" ░▒▓█") else " .:#@"
    lines = []
    for r in range(8):
        row = []
        for img in images:
            levels = np.minimum((img.reshape(8, 8)[r] * len(shades)).astype(int), len(shades) - 1)
            row.append("".join(shades[v] * 2 for v in levels))
        lines.append("   ".join(row).rstrip())
    lines.append("   ".join(f"{t:<16}" for t in titles).rstrip())
    return "\n".join(lines)


def demo_digits(X, y, epochs, seed):
    """The 3Blue1Brown digit network, 64-16-16-10, sigmoid hidden layers, softmax
    cross-entropy, on the 8x8 digits (X, y) with a quarter held out."""
    X_train, X_test, y_train, y_test = datasets.train_test_split(X, y, 0.25, seed=seed,
                                                                 stratify=True)
    model = nn.MLP([64, 16, 16, 10], activation="sigmoid", seed=seed, dtype="float32")
    optimizer = nn.optim.SGD(lr=0.5, momentum=0.9)
    print(f"nncore {nn.__version__}: the 64-16-16-10 digit network (sigmoid hidden layers, "
          f"softmax cross-entropy, {model.n_parameters():,} parameters)")
    print(f"8x8 handwritten digits: {len(X_train)} to learn from, {len(X_test)} held out; "
          f"{optimizer!r}, batch 32")
    t0 = time.perf_counter()
    history = model.fit(X_train, y_train, loss="softmax_cross_entropy", optimizer=optimizer,
                        epochs=epochs, batch_size=32, validation_data=(X_test, y_test))
    seconds = time.perf_counter() - t0
    acc = model.evaluate(X_test, y_test)["accuracy"]
    loss, val = history["loss"], history["val_loss"]
    print(f"trained {epochs} epochs in {seconds:.2f} s "
          f"({epochs * len(X_train) / seconds:,.0f} samples/s, {nn.get_num_threads()} threads)")
    print(f"training loss {loss[0]:.3f} -> {loss[-1]:.4f}  (log scale) {sparkline(loss)}")
    print(f"held-out loss {val[0]:.3f} -> {val[-1]:.4f}  (log scale) {sparkline(val)}")
    print(f"held-out accuracy {acc:.1%} (guessing gets 10%)")
    pred = model.predict(X_test[:4])
    print()
    print(digit_art(X_test[:4], [f"guess {p}" + ("" if p == t else f" (is {t})")
                                 for p, t in zip(pred, y_test[:4])]))
    return 0 if acc >= 0.9 else 1


def cmd_demo(args):
    with _threads(args.threads):
        X, y = datasets.digits()
        return demo_digits(X, y, args.epochs or 50, args.seed)


# ---- the parser ---------------------------------------------------------------

def _add_data(p, required=True):
    p.add_argument("--data", required=required, metavar="SET",
                   help=f"{DATA_HELP}")
    p.add_argument("--target", type=_target, default=-1, metavar="COL",
                   help="csv: the target column, an index or a header name (default -1, the last)")
    p.add_argument("--samples", type=_positive_int, metavar="N",
                   help="spiral, moons, circles, sine: how many points to generate "
                        "(default 300, 500, 500, 500)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the generated data, the weights, the shuffling and the "
                        "--validation-split (default 0)")
    p.add_argument("--validation-split", type=_number(below=1.0), default=0.0,
                   metavar="F",
                   help="hold out this fraction at random (stratified by class, seeded)")
    p.add_argument("--threads", type=_thread_count, metavar="N",
                   help="threads for the kernels (default: nncore.get_num_threads())")


def build_parser():
    parser = _Parser(prog=PROG, description="Train and use multi-layer perceptrons on the "
                     "CPU (nncore's compiled core).",
                     epilog="Set NNCORE_TRACEBACK=1 to see the traceback behind an error.")
    parser.add_argument("--version", action="version", version=f"nncore {nn.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser._subcommands = sub.choices

    p = sub.add_parser("train", help="train a network on a data set",
                       description="Train an MLP and print its progress, then the final "
                                   "train (and validation) loss and accuracy.")
    _add_data(p)
    p.add_argument("--layers", type=_sizes, metavar="SIZES",
                   help="layer sizes, inputs first, e.g. 2,100,3 (default: "
                        "features,64,classes)")
    p.add_argument("--activation", default="relu",
                   choices=[a for a in F.ACTIVATIONS if a != "softmax"],
                   help="of the hidden layers (default relu); the output layer stays linear")
    p.add_argument("--loss", choices=list(losses_mod.LOSSES),
                   help="default softmax_cross_entropy for class labels, mse otherwise")
    p.add_argument("--optimizer", choices=list(_optimizer_classes()), default="sgd")
    p.add_argument("--lr", type=_number(positive=True),
                   help="learning rate (default 0.1 for sgd, else the optimizer's own)")
    p.add_argument("--momentum", type=_number(),
                   help="for optimizers with momentum (default 0.9 for sgd)")
    p.add_argument("--epochs", type=_positive_int, default=100)
    p.add_argument("--batch-size", type=_positive_int, default=32, metavar="N")
    p.add_argument("--l2", type=_number(), default=0.0,
                   help="weight penalty 1/2 l2 sum ||W||^2")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1,
                   help="0 quiet, 1 progress bar on a terminal (else a line per epoch), "
                        "2 a line per epoch")
    p.add_argument("-q", "--quiet", dest="verbose", action="store_const", const=0)
    p.add_argument("--save", metavar="FILE.npz", help="write the trained model here")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="loss and accuracy of a saved model on a data set",
                       description="Loss and accuracy of a saved model. mnist:<folder> "
                                   "reads the t10k-* files; the generated sets are drawn "
                                   "again with --seed (another seed: a fresh sample); "
                                   "--validation-split F with train's --seed evaluates "
                                   "only the part train held out.")
    p.add_argument("model", help="a .npz file from train --save or model.save")
    _add_data(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="predictions of a saved model for new inputs",
                       description="Class labels (or, with --proba, probabilities; for mse "
                                   "models the outputs) for each row of --input.")
    p.add_argument("model")
    p.add_argument("--input", required=True, metavar="FILE",
                   help=".csv (numbers only, optional header) or .npy (n, features)")
    p.add_argument("--output", metavar="FILE", help=".csv or .npy (default: the screen, as CSV)")
    p.add_argument("--proba", action="store_true", help="class probabilities instead of labels")
    p.add_argument("--threads", type=_thread_count, metavar="N")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("info", help="architecture, parameters, loss, optimizer of a saved model")
    p.add_argument("model")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("config", help="version, OpenMP, SIMD path, threads")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("bench", help="run bench/train.py --quick (--full: bench/WORKLOADS.md sizes)",
                       description="Run bench/train.py from the source tree, with --quick "
                                   "unless other arguments follow.")
    p.set_defaults(func=cmd_bench, args=[])      # main passes the other arguments on

    p = sub.add_parser("demo", help="train the 64-16-16-10 digit network (a few seconds)",
                       description="Train the 3Blue1Brown-shaped 64-16-16-10 sigmoid network "
                                   "on the 8x8 digits and show the held-out accuracy and the "
                                   "loss curve.")
    p.add_argument("--epochs", type=_positive_int, help="default 50")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=_thread_count, metavar="N")
    p.set_defaults(func=cmd_demo)
    return parser


def _message(e):
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        text = f"{e.filename}: {e.strerror}"
    else:
        text = str(e) or type(e).__name__
    return " ".join(text.split())


def main(argv=None):
    """Run the command line; returns the exit status (0 ok, 1 failed, 2 bad usage)."""
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown and args.command != "bench":
            (parser if args.command is None else parser._subcommands[args.command]).error(
                f"unrecognized arguments: {' '.join(unknown)}")
        args.args = unknown
        if args.command is None:
            raise CLIError(f"choose a command: train, evaluate, predict, info, config, bench "
                           f"or demo (see '{PROG} --help')")
        return args.func(args)
    except SystemExit as e:             # --help, --version
        return e.code if isinstance(e.code, int) else 0
    except CLIError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:             # e.g. nncore predict ... | head
        with contextlib.suppress(Exception):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except MemoryError as e:            # e.g. --layers 2,1000000000000,2
        if os.environ.get("NNCORE_TRACEBACK"):
            raise
        print(f"{PROG}: error: out of memory" + (f": {_message(e)}" if str(e) else ""),
              file=sys.stderr)
        return 1
    except (OSError, ValueError, TypeError, ImportError, RuntimeError, ArithmeticError) as e:
        if os.environ.get("NNCORE_TRACEBACK"):
            raise
        print(f"{PROG}: error: {_message(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
