# The two floating-point types every kernel is compiled for.
ctypedef fused real:
    float
    double
