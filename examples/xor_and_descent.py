"""XOR learned by a 2-4-1 network; batch, stochastic and minibatch gradient descent compared.

Part 1: the four XOR points (nn.datasets.xor), a 2-4-1 tanh network with one logit out,
binary cross-entropy, Adam. No line separates the classes; four hidden units bend the
boundary around them.

Part 2: the same problem with more samples, 200 noisy points around each corner, so the
batch size has room to matter. One network, one starting point (the same seed), plain
SGD with one learning rate; only batch_size changes: None (batch gradient descent, one
step per epoch), 1 (stochastic, 800 steps per epoch) and 32 (minibatch, 25 steps).
Loss curves overlaid per epoch and per millisecond of training (log scale): stochastic
descent takes 800 small noisy steps per epoch and learns the most per epoch; batch descent
takes one exact step, the cheapest epoch but the least progress; minibatches sit between,
and with this data reach a loss of 0.1 in the least time.

    python examples/xor_and_descent.py [--out DIR] [--fast]
"""
import time

import numpy as np

import nncore as nn

from _common import arguments, plt, save


def xor_net(seed=0):
    return nn.Sequential([nn.Dense(2, 4, activation="tanh"), nn.Dense(4, 1)], seed=seed)


def noisy_xor(n_per_corner=200, noise=0.15, seed=0):
    """n_per_corner points around each corner of the unit square, label x0 xor x1."""
    rng = np.random.default_rng(seed)
    corners = rng.integers(0, 2, size=(4 * n_per_corner, 2))
    X = corners + noise * rng.standard_normal(corners.shape)
    return X, (corners[:, 0] ^ corners[:, 1]).reshape(-1, 1)


def first_below(values, level):
    """1-based index of the first value below level, or None."""
    hits = np.flatnonzero(np.asarray(values) < level)
    return int(hits[0]) + 1 if hits.size else None


def main(argv=None):
    args = arguments(__doc__, argv, fast="fewer epochs (for the tests)")

    # ---- part 1: the four points
    X, y = nn.datasets.xor()
    model = xor_net()
    epochs = 500
    model.fit(X, y.reshape(-1, 1), loss="binary_cross_entropy",
              optimizer=nn.optim.Adam(lr=0.05), epochs=epochs, batch_size=None)
    proba = model.predict_proba(X)[:, 0]
    print(f"XOR, 2-4-1 tanh, binary cross-entropy, Adam(lr=0.05), {epochs} full-batch steps")
    for xi, yi, p in zip(X.astype(int).tolist(), y, proba):
        print(f"  {xi} -> P(1) = {p:.4f}  (target {yi})")
    scores = model.evaluate(X, y)
    print(f"  loss {scores['loss']:.4f}, accuracy {100 * scores['accuracy']:.0f} %")
    fig, ax = nn.plot.decision_boundary(model, X, y, padding=0.5)
    ax.set_title("XOR: 2-4-1 tanh network")
    ax.set_aspect("equal")
    save(fig, args.out, "xor.png")

    # ---- part 2: batch vs stochastic vs minibatch, same start, same lr
    Xc, yc = noisy_xor()
    epochs = 10 if args.fast else 100
    lr = 0.5
    runs = [("batch (batch_size=None)", None), ("stochastic (batch_size=1)", 1),
            ("minibatch (batch_size=32)", 32)]
    print(f"\nnoisy XOR, {len(Xc)} points; 2-4-1 tanh, SGD(lr={lr}), {epochs} epochs, "
          f"the same initial weights")
    print(f"{'':27s} {'steps/epoch':>11s} {'ms/epoch':>9s} {'final loss':>10s} "
          f"{'accuracy':>8s}   loss < 0.1 after")
    fig, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for name, batch_size in runs:
        model = xor_net()
        t0 = time.perf_counter()
        history = model.fit(Xc, yc, loss="binary_cross_entropy", optimizer=nn.optim.SGD(lr=lr),
                            epochs=epochs, batch_size=batch_size)
        seconds = time.perf_counter() - t0
        loss = history["loss"]
        steps = -(-len(Xc) // (batch_size or len(Xc)))
        # every epoch does the same work: spread the measured time evenly over them
        clock = seconds * np.arange(1, epochs + 1) / epochs
        e = first_below(loss, 0.1)
        reached = f"{e} epochs, {1e3 * clock[e - 1]:.1f} ms" if e else "not reached"
        print(f"{name:27s} {steps:11d} {1e3 * seconds / epochs:9.3f} {loss[-1]:10.4f} "
              f"{100 * model.evaluate(Xc, yc)['accuracy']:7.1f} %   {reached}")
        (line,) = by_epoch.plot(np.arange(1, epochs + 1), loss, label=name)
        by_time.plot(1e3 * clock, loss, color=line.get_color(), label=name)
    by_epoch.set_xlabel("epoch")
    by_time.set_xlabel("training time (ms)")
    by_time.set_xscale("log")
    for ax in (by_epoch, by_time):
        ax.set_yscale("log")
        ax.set_ylabel("mean loss over the epoch's steps")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(f"gradient descent on noisy XOR ({len(Xc)} points), SGD lr={lr}: "
                 f"only the batch size differs")
    save(fig, args.out, "descent.png")


if __name__ == "__main__":
    main()
