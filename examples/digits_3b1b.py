"""3Blue1Brown's network: 64-16-16-10 with sigmoid hidden units on the 8x8 digits.

The 1797 handwritten digits nncore ships (8x8 pixels, 0..16, scaled to [0, 1]), a quarter
held out. Two hidden layers of 16 sigmoid units, softmax cross-entropy on the 10 logits,
SGD with momentum. Writes the loss and accuracy curves and the first layer's 16 weight
vectors drawn as 8x8 images: what each first-layer neuron "looks for".

    python examples/digits_3b1b.py [--out DIR] [--fast]
"""
import numpy as np

import nncore as nn

from _common import arguments, save


def main(argv=None):
    args = arguments(__doc__, argv, fast="fewer epochs (for the tests)")
    X, y = nn.datasets.digits()
    order = np.random.default_rng(0).permutation(len(X))     # a quarter held out
    test, train = order[:len(X) // 4], order[len(X) // 4:]
    X_train, X_test, y_train, y_test = X[train], X[test], y[train], y[test]
    model = nn.MLP([64, 16, 16, 10], activation="sigmoid", seed=0)
    epochs = 10 if args.fast else 60
    history = model.fit(X_train, y_train, loss="softmax_cross_entropy",
                        optimizer=nn.optim.SGD(lr=0.5, momentum=0.9), epochs=epochs,
                        batch_size=32, validation_data=(X_test, y_test))
    print(f"8x8 digits: {len(X_train)} training, {len(X_test)} test images; {model}")
    print(f"SGD(lr=0.5, momentum=0.9), batch 32, {epochs} epochs, "
          f"{model.n_parameters()} parameters")
    print(f"loss: epoch 1 {history['loss'][0]:.3f}, epoch {epochs} {history['loss'][-1]:.4f}")
    print(f"accuracy: training {100 * model.evaluate(X_train, y_train)['accuracy']:.1f} %, "
          f"test {100 * history['val_accuracy'][-1]:.1f} %")

    fig, _ = nn.plot.history(history)
    fig.suptitle("64-16-16-10 sigmoid on the 8x8 digits")
    save(fig, args.out, "digits_history.png")

    fig, _ = nn.plot.weight_images(model.layers[0], shape=(8, 8), n=16)
    save(fig, args.out, "digits_weights.png")


if __name__ == "__main__":
    main()
