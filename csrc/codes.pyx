"""The kernel codes of codes.h, for Python: name -> code.

Design: codes.h is the one table; this module only reads it, so Python, Cython
and C cannot disagree. nncore.functional turns a name into the code a kernel
takes here (ACTIVATIONS[activation], LOSSES[loss], OPTIMIZERS[optimizer]); the
keys are nncore.reference's ACTIVATIONS and LOSSES, in their order, and the
optimizers' names ("rmsprop" is reserved: no kernel takes it yet).
"""

#: activation name -> code
ACTIVATIONS = {
    "identity": ACT_IDENTITY, "step": ACT_STEP, "sigmoid": ACT_SIGMOID, "tanh": ACT_TANH,
    "relu": ACT_RELU, "leaky_relu": ACT_LEAKY_RELU, "softplus": ACT_SOFTPLUS,
    "softmax": ACT_SOFTMAX,
}

#: loss name -> code
LOSSES = {
    "mse": LOSS_MSE, "softmax_cross_entropy": LOSS_SOFTMAX_CROSS_ENTROPY,
    "binary_cross_entropy": LOSS_BINARY_CROSS_ENTROPY, "hinge": LOSS_HINGE,
}

#: optimizer name -> code
OPTIMIZERS = {"sgd": OPT_SGD, "adam": OPT_ADAM, "rmsprop": OPT_RMSPROP}
