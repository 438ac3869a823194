"""A 1-2-1 softplus network fitted to the three dose points, and its curve decomposition.

The data (nn.datasets.curve): doses 0, 0.5, 1 -> efficacy 0, 1, 0. Two hidden units are
enough: each bends its own piece of the softplus curve, the output layer scales the two
pieces, adds them and shifts the sum by its bias (StatQuest's "Inside the Black Box").

    python examples/curve_fit.py [--out DIR] [--fast]
"""
import numpy as np

import nncore as nn

from _common import arguments, save


def main(argv=None):
    args = arguments(__doc__, argv)

    X, y = nn.datasets.curve()
    # float64 and seed 0: Adam takes this seed to a loss of ~1e-30 in 2000 full-batch steps
    model = nn.Sequential([nn.Dense(1, 2, activation="softplus"), nn.Dense(2, 1)],
                          seed=0, dtype="float64")
    epochs = 2000                          # 0.2 s
    history = model.fit(X, y, loss="mse", optimizer=nn.optim.Adam(lr=0.05), epochs=epochs,
                        batch_size=None, shuffle=False)

    hidden, output = model.layers
    print(f"1-2-1 softplus, Adam(lr=0.05), {epochs} full-batch steps")
    print(f"loss: first epoch {history['loss'][0]:.4f}, final "
          f"{model.evaluate(X, y)['loss']:.3g}")
    for i in range(2):
        print(f"unit {i}: a_{i} = softplus({hidden.weight[i, 0]:+.3f} x "
              f"{hidden.bias[i]:+.3f}), output weight v_{i} = {output.weight[0, i]:+.3f}")
    print(f"output bias c = {output.bias[0]:+.3f}")
    pred = model.predict(X)[:, 0]
    print("predictions at doses", X[:, 0].tolist(), "->", np.round(pred, 4).tolist())
    parts = nn.plot.curve_components(model, X)
    print(f"max |sum_i v_i a_i + c - predict| = {np.abs(parts['output'] - pred).max():.2g}")

    fig, _ = nn.plot.curve_decomposition(model, X=X, y=y)
    fig.suptitle("dose 0, 0.5, 1 -> 0, 1, 0 with a 1-2-1 softplus network")
    save(fig, args.out, "curve_fit.png")


if __name__ == "__main__":
    main()
