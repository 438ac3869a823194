# The codes of codes.h for Cython: what the kernels take for an activation, a
# loss and an optimizer (the Cython names are the C names without NN_).
cdef extern from "nncore/_kernels/codes.h":
    enum:
        ACT_IDENTITY "NN_ACT_IDENTITY"
        ACT_STEP "NN_ACT_STEP"
        ACT_SIGMOID "NN_ACT_SIGMOID"
        ACT_TANH "NN_ACT_TANH"
        ACT_RELU "NN_ACT_RELU"
        ACT_LEAKY_RELU "NN_ACT_LEAKY_RELU"
        ACT_SOFTPLUS "NN_ACT_SOFTPLUS"
        ACT_SOFTMAX "NN_ACT_SOFTMAX"
    enum:
        LOSS_MSE "NN_LOSS_MSE"
        LOSS_SOFTMAX_CROSS_ENTROPY "NN_LOSS_SOFTMAX_CROSS_ENTROPY"
        LOSS_BINARY_CROSS_ENTROPY "NN_LOSS_BINARY_CROSS_ENTROPY"
        LOSS_HINGE "NN_LOSS_HINGE"
    enum:
        OPT_SGD "NN_OPT_SGD"
        OPT_ADAM "NN_OPT_ADAM"
        OPT_RMSPROP "NN_OPT_RMSPROP"
