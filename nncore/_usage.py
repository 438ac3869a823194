"""Who may use a model now: layers belong to one model (_adopt), and one model is
used by any number of predicting threads or one training call (Usage)."""
import contextlib
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

    @contextlib.contextmanager
    def training(self, what, reentrant=False):
        """Exclusive use; reentrant: also from inside the trainer's own call (a
        callback running the layer API between two steps)."""
        me = threading.get_ident()
        with self._lock:
            if reentrant and self._trainer == me:
                nested = True
            elif self._trainer is not None or self._predicting:
                busy = ("training" if self._trainer is not None else "predicting")
                raise RuntimeError(f"{what}: the model is {busy} in another call (a thread, "
                                   f"or a callback of its own fit); train one model from one "
                                   f"thread at a time, or give each thread its own model")
            else:
                nested = False
                self._trainer = me
        try:
            yield
        finally:
            if not nested:
                with self._lock:
                    self._trainer = None

    @contextlib.contextmanager
    def inference(self):
        with self._lock:
            if self._trainer is not None and self._trainer != threading.get_ident():
                raise RuntimeError("predict: the model is training in another thread; "
                                   "predict after fit returns (or predict with a copy)")
            self._predicting += 1
        try:
            yield
        finally:
            with self._lock:
                self._predicting -= 1
