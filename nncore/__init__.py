"""nncore: multi-layer perceptrons on the CPU, a compiled core with a NumPy twin."""
from nncore._version import __version__

from nncore._threads import get_num_threads, set_num_threads, threads
from nncore._kernels.openmp import openmp_enabled
from nncore._config import config, get_include, show_config
from nncore import functional, reference, init, losses, optim, callbacks, datasets
from nncore.layers import Dense
from nncore.training import TrainingDiverged
from nncore.model import MLP, Sequential, load
from nncore import io, schema, training
from nncore.gradcheck import gradcheck
from nncore import plot            # matplotlib is imported on first use, not here

__all__ = [
    "__version__", "Dense", "MLP", "Sequential", "TrainingDiverged", "callbacks", "config",
    "datasets", "functional", "get_include", "get_num_threads", "gradcheck", "init", "io",
    "load", "losses", "openmp_enabled", "optim", "plot", "reference", "schema",
    "set_num_threads", "show_config", "threads", "training",
]
