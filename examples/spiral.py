"""The cs231n spiral: a linear softmax classifier against a 2-layer ReLU network.

Three arms of 100 points each that no straight line separates: the linear classifier
(2-3, softmax cross-entropy) stays near 50 % training accuracy, the network 2-100-3 with
ReLU passes 98 %. Decision regions side by side.

    python examples/spiral.py [--out DIR] [--fast]
"""
import nncore as nn

from _common import arguments, plt, save


def main(argv=None):
    args = arguments(__doc__, argv)

    X, y = nn.datasets.spiral(n_per_class=100, n_classes=3, seed=0)
    epochs = 300                           # 0.2 s for both
    linear = nn.Sequential([nn.Dense(2, 3)], seed=0)
    network = nn.Sequential([nn.Dense(2, 100, activation="relu"), nn.Dense(100, 3)], seed=0)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4), layout="constrained")
    print(f"spiral: {len(X)} points, 3 classes; SGD(lr=0.5, momentum=0.9), batch 64, "
          f"{epochs} epochs")
    for model, name, ax in ((linear, "linear softmax 2-3", axes[0]),
                            (network, "ReLU network 2-100-3", axes[1])):
        model.fit(X, y, loss="softmax_cross_entropy",
                  optimizer=nn.optim.SGD(lr=0.5, momentum=0.9), epochs=epochs, batch_size=64)
        scores = model.evaluate(X, y)
        print(f"{name:22s} loss {scores['loss']:.3f}  training accuracy "
              f"{100 * scores['accuracy']:.1f} %")
        nn.plot.decision_boundary(model, X, y, ax=ax)
        ax.set_title(f"{name}: {100 * scores['accuracy']:.1f} %")
        ax.set_aspect("equal")
    save(fig, args.out, "spiral.png")


if __name__ == "__main__":
    main()
