/* The codes the kernels take for an activation, a loss and an optimizer: one
 * table for C (elementwise.h's switches), Cython (codes.pxd, cimported by the
 * kernel modules) and Python (nncore._kernels.codes: dicts name -> code, which
 * nncore.functional looks names up in). The names are nncore.reference's
 * ACTIVATIONS and LOSSES and the optimizers' names. The values are part of the
 * C API (nncore/kernels.pxd): add codes at the end, never renumber.
 */
#ifndef NNCORE_CODES_H
#define NNCORE_CODES_H

enum nn_activation {
    NN_ACT_IDENTITY = 0,
    NN_ACT_STEP = 1,
    NN_ACT_SIGMOID = 2,
    NN_ACT_TANH = 3,
    NN_ACT_RELU = 4,
    NN_ACT_LEAKY_RELU = 5,
    NN_ACT_SOFTPLUS = 6,
    NN_ACT_SOFTMAX = 7          /* row-wise: the only code elementwise.h leaves out */
};

enum nn_loss {
    NN_LOSS_MSE = 0,
    NN_LOSS_SOFTMAX_CROSS_ENTROPY = 1,  /* takes labels */
    NN_LOSS_BINARY_CROSS_ENTROPY = 2,
    NN_LOSS_HINGE = 3                   /* takes labels */
};

enum nn_optimizer {
    NN_OPT_SGD = 0,
    NN_OPT_ADAM = 1,
    NN_OPT_RMSPROP = 2          /* reserved for its kernel */
};

#endif
