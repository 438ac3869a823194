"""Who may use a model now: layers belong to one model (_adopt), and one model is
used by any number of predicting threads or one training call (Usage)."""
import threading
import weakref


def adopt(model, layers):
    """Make model the owner of layers; a layer may sit once in one live model (nncore
    has no weight tying: a shared layer would get one gradient per use)."""
    seen = {}
    for i, layer in enumerate(layers):
        if id(layer) in seen:
            raise ValueError(f"layers[{i}] is layers[{seen[id(layer)]}]: a Dense may appear "
                             f"once in a model (nncore does not tie weights); use a new Dense")
        seen[id(layer)] = i
        owner = layer._owner() if layer._owner is not None else None
        if owner is not None and owner is not model:
            raise ValueError(f"layers[{i}] already belongs to another model (building it "
                             f"again would redraw that model's weights): use a new Dense, "
                             f"or copy.deepcopy the model")
    for layer in layers:
        layer._owner = weakref.ref(model)


class Usage:
    """Who uses a model now: any number of threads predicting, or one call training.
    Training while anything else runs on the model -- another thread predicting or
    training, or a fit called from a callback -- is refused, as is predicting from
    another thread while it trains: either would read or write arrays mid-update."""

    def __init__(self, model):
        self._lock = threading.Lock()
        self._predicting = 0
        self._trainer = None                 # the thread that trains, or None

    def training(self, what, reentrant=False):
        """Exclusive use, as a context manager; reentrant: also from inside the
        trainer's own call (a callback running the layer API between two steps)."""
        return _Training(self, what, reentrant)

    def inference(self):
        """Shared use by predicting threads, as a context manager."""
        return _Inference(self)


# (the contexts are classes, not contextlib generators: ~2 us less a call)

class _Training:
    """Usage.training's context."""
    __slots__ = ("usage", "what", "reentrant", "nested")

    def __init__(self, usage, what, reentrant):
        self.usage, self.what, self.reentrant = usage, what, reentrant

    def __enter__(self):
        usage, me = self.usage, threading.get_ident()
        with usage._lock:
            if self.reentrant and usage._trainer == me:
                self.nested = True
            elif usage._trainer is not None or usage._predicting:
                busy = ("training" if usage._trainer is not None else "predicting")
                raise RuntimeError(f"{self.what}: the model is {busy} in another call (a "
                                   f"thread, or a callback of its own fit); train one model "
                                   f"from one thread at a time, or give each thread its own "
                                   f"model")
            else:
                self.nested = False
                usage._trainer = me

    def __exit__(self, *exc):
        if not self.nested:
            with self.usage._lock:
                self.usage._trainer = None
        return False


class _Inference:
    """Usage.inference's context."""
    __slots__ = ("usage",)

    def __init__(self, usage):
        self.usage = usage

    def __enter__(self):
        usage = self.usage
        with usage._lock:
            if usage._trainer is not None and usage._trainer != threading.get_ident():
                raise RuntimeError("predict: the model is training in another thread; "
                                   "predict after fit returns (or predict with a copy)")
            usage._predicting += 1

    def __exit__(self, *exc):
        with self.usage._lock:
            self.usage._predicting -= 1
        return False
