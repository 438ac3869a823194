"""The one table of kernel codes (csrc/codes.h) as Python reads it (nncore._kernels.codes):
the names of nncore.reference, one code each, and each code runs its own kernel."""
import numpy as np
import pytest

from nncore import reference
from nncore._kernels import activations, codes


def test_names_are_the_references():
    assert tuple(codes.ACTIVATIONS) == reference.ACTIVATIONS
    assert tuple(codes.LOSSES) == reference.LOSSES
    assert tuple(codes.OPTIMIZERS) == ("sgd", "adam", "rmsprop")


@pytest.mark.parametrize("table", [codes.ACTIVATIONS, codes.LOSSES, codes.OPTIMIZERS])
def test_one_code_each(table):
    values = list(table.values())
    assert all(type(v) is int for v in values)
    assert sorted(values) == list(range(len(values)))


@pytest.mark.parametrize("name", reference.ACTIVATIONS)
def test_activation_code_runs_that_activation(name):
    """The raw kernel given codes.ACTIVATIONS[name] computes `name`, forward and backward
    (a code off by one would run a neighbour, which differs somewhere on these points)."""
    z = np.array([[-3.0, -1.0, -0.25, 0.0, 0.5, 2.0]])
    grad_a = np.array([[0.5, -1.0, 2.0, 1.5, -0.75, 1.0]])
    a, g = np.full_like(z, np.nan), np.full_like(z, np.nan)
    activations.activation_forward(codes.ACTIVATIONS[name], 0.1, z, a, 1)
    activations.activation_backward(codes.ACTIVATIONS[name], 0.1, z, a, grad_a, g, 1)
    np.testing.assert_allclose(a, reference.activation_forward(name, z, slope=0.1),
                               rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(g, reference.activation_backward(name, z, a, grad_a, slope=0.1),
                               rtol=1e-14, atol=1e-15)
