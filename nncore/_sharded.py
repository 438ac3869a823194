"""Sharded training steps: the schedule that gives the same bits in one process
(fit(..., grad_shards=G)) and in P processes (nncore.distributed.fit).

The training set is cut into G contiguous reduction shards (numpy.array_split's sizes:
the first n % G shards one row longer). Each shard is shuffled on its own (the G
permutations of an epoch are drawn in shard order from the model's shuffle generator,
by every process) and read in batches of batch_size / G rows; global batch b is batch
b of every shard (a shard that has run out adds nothing). A step:

    s_i = w_i / W (or 1 / B) with W = tree sum of the shards' sum w, B the batch rows
    shard g: plan.gradients(rows of g, scale=s, l2=False)     -> grad_g, loss_g
    grad = tree sum of grad_g; loss = tree sum of loss_g + 1/2 l2 sum ||W||^2
    grad_W += l2 W; plan.apply

The tree is the bottom-up pairwise one over the G leaves (Tree): node (k, j) covers
leaves [j 2^k, (j + 1) 2^k) and is node (k-1, 2j) + node (k-1, 2j+1), or node (k-1, 2j)
carried up when that is the last. Whoever computes a node computes it from the same
two arrays with the same float additions, so a process that owns a contiguous range
of leaves can compute its maximal nodes (Tree.frontier) and leave the rest of the tree
to the exchange (an Exchange: one process, or nncore.distributed's over MPI).

In code (ShardedSteps, fit's loop for G > 1 and under MPI), a step is two compiled calls
and one exchange: plan.shard_gradients computes every local shard's gradient into its
own row of a preallocated (shards, parameters) buffer and adds the local subtree in
place (the additions planned once by Tree.plan, which mirrors Tree.node on slots); the
exchange brings every process's losses, accuracy counts and stop flag together with
the subtree sums (exchange.start), the tree's root (exchange.root); plan.apply_from adds
the l2 term and applies the update reading that root. No array is allocated per step.
"""
import math

import numpy as np


WEIGHTS_ZERO = "sample_weight must not be all zero (the weights are divided by their sum)"


def shard_sizes(n, grad_shards):
    """Rows of each of the G shards of n rows (numpy.array_split's sizes)."""
    q, r = divmod(n, grad_shards)
    return [q + (1 if g < r else 0) for g in range(grad_shards)]


def add(a, b):
    """a + b, None meaning nothing (a shard without rows in this batch)."""
    if a is None:
        return b
    if b is None:
        return a
    return a + b


class Tree:
    """The fixed bottom-up pairwise tree over G leaves (module docstring)."""

    def __init__(self, G):
        self.G = G
        self.depth = max(0, math.ceil(math.log2(G)))
        while (1 << self.depth) < G:          # (log2 rounding)
            self.depth += 1

    def count(self, k):
        """Nodes at level k."""
        return -(-self.G // (1 << k))

    def frontier(self, lo, hi):
        """The maximal nodes (k, j) whose leaves all lie in [lo, hi), left to right."""
        nodes, p = [], lo
        while p < hi:
            k = 0
            while (k < self.depth and p % (1 << (k + 1)) == 0
                   and min(p + (1 << (k + 1)), self.G) <= hi):
                k += 1
            nodes.append((k, p >> k))
            p = min(p + (1 << k), self.G)
        return nodes

    def node(self, k, j, known):
        """Node (k, j) from `known` {(k, j): value} (leaves are (0, g))."""
        key = (k, j)
        if key in known:
            return known[key]
        left = self.node(k - 1, 2 * j, known)
        if 2 * j + 1 < self.count(k - 1):
            left = add(left, self.node(k - 1, 2 * j + 1, known))
        known[key] = left
        return left

    def empty(self, key, empty):
        """Whether node key covers only leaves in the set `empty`."""
        k, j = key
        return all(g in empty for g in range((j << k), min((j + 1) << k, self.G)))

    def root(self, known):
        return self.node(self.depth, 0, known)

    def plan(self, k, j, known, ops):
        """Node (k, j) as Tree.node computes it, on slots: known {(k, j): slot or None}
        (None: no rows); returns the slot that ends up holding the node (None: no rows)
        and appends (a, b) to ops for every addition slot a += slot b, in order."""
        key = (k, j)
        if key in known:
            return known[key]
        left = self.plan(k - 1, 2 * j, known, ops)
        if 2 * j + 1 < self.count(k - 1):
            right = self.plan(k - 1, 2 * j + 1, known, ops)
            if left is None:
                left = right
            elif right is not None:
                ops.append((left, right))
        known[key] = left
        return left


class LocalExchange:
    """One process owns every shard: the exchanges are the identity."""

    rank, size = 0, 1
    comm_seconds = 0.0
    l2_in_root = False                      # root() leaves the l2 term to apply_from

    def __init__(self, grad_shards):
        self.G = grad_shards
        self.lo, self.hi = 0, grad_shards

    def setup(self, n_local, crc, weighted=None):
        """The rows of every shard (this process holds all of them); weighted: whether
        any sample weight is > 0 (None: no weights)."""
        if weighted is False:
            raise ValueError(WEIGHTS_ZERO)
        return shard_sizes(n_local, self.G)

    def gather(self, msg, what):
        """Every process's float64 vector msg, as rows of one (size, len) array."""
        return msg[None, :]

    def prepare(self, run):
        """Buffers for the steps of run (ShardedSteps)."""
        self.leaves, self.headers = run.leaves, run.header[None, :]

    def start(self, header, skipped):
        """Every process's header (its losses, accuracy count and stop flag), as rows
        of a (size, len) array; unless skipped, the subtree sums travel with them."""
        return self.headers

    def root(self, filled, slots):
        """The tree's root for a batch whose first `filled` shards have rows; slots: the
        leaves rows holding this process's frontier nodes (here one: the root)."""
        return self.leaves[slots[0]]

    def close(self):
        pass


class ShardedSteps:
    """fit's loop for grad_shards = G > 1 (or under MPI), on top of nncore.training's
    _Run (training._ShardedRun puts the two together): per step, the compiled gradient
    phase of this process's shards (plan.shard_gradients), the exchange, the compiled
    apply phase (plan.apply_from); the schedule is the module docstring's."""

    def __init__(self, model, loss, optimizer, X, y, w, batch_size, shuffle, validation,
                 callbacks, grad_shards, exchange, sizes, n_threads):
        G = grad_shards
        self.G, self.ex, self.tree = G, exchange, Tree(G)
        self.sizes = sizes
        self.bs = max(sizes) if batch_size is None else batch_size // G
        self.n_threads = n_threads
        ex = exchange
        lo, hi = ex.lo, ex.hi
        self.S = S = hi - lo
        self.starts = np.concatenate([[0], np.cumsum(sizes[lo:hi])]).astype(np.intp)
        plan = model._plan(loss, optimizer, self.bs)
        super().__init__(model, plan, loss, optimizer, X, y, w, self.bs * G, shuffle,
                         validation, callbacks)
        nbat = self.n_batches = max(-(-m // self.bs) for m in sizes)
        self.grads = model.gradients()
        self.N = sum(g.size for g in self.grads)
        # batch b: shard i's rows are order[start:start + count], (start, count) =
        # shards[b, i]; the shards with rows are the first filled[b] (sizes do not grow)
        self.shards = np.zeros((nbat, S, 2), dtype=np.intp)
        self.filled, self.batch_rows, self.counts = [], [], []
        for b in range(nbat):
            spans = [self._rows(g, b) for g in range(G)]
            for i in range(S):
                r0, r1 = spans[lo + i]
                self.shards[b, i] = (self.starts[i] + r0, r1 - r0)
            self.counts.append([r1 - r0 for r0, r1 in spans[lo:hi]])
            self.filled.append(sum(r1 > r0 for r0, r1 in spans))
            self.batch_rows.append(sum(r1 - r0 for r0, r1 in spans))
        self.order = np.empty(int(self.starts[-1]), dtype=np.intp)
        self.scale = np.zeros(int(self.starts[-1]))
        self.skipped = [False] * nbat
        if w is None:                       # s_i = 1 / B: the same every epoch
            inv = 1.0 / np.array(self.batch_rows, dtype=np.float64)
            for i in range(S):
                m = sizes[lo + i]
                self.scale[self.starts[i]:self.starts[i + 1]] = inv[np.arange(m) // self.bs]
        self.leaves = np.empty((S, self.N), dtype=X.dtype)
        self.results = np.zeros((S, 3))
        self.header = np.zeros(2 + S)       # accuracy count, stop flag, each shard's loss
        self.k = 1 if self.y is not None else self.t.shape[1]
        self.plans = {}
        self.root = None
        ex.prepare(self)

    def _rows(self, g, b):
        """Rows (into the whole shard) of shard g's batch b."""
        m = self.sizes[g]
        return min(b * self.bs, m), min((b + 1) * self.bs, m)

    def _plan_for(self, filled):
        """(adds, slots, loss_ops, loss_root) for a batch whose first `filled` shards have
        rows: the local additions (rows of leaves), the leaves row of each local
        frontier node (None: no rows), and the additions of the shards' losses."""
        plan = self.plans.get(filled)
        if plan is None:
            tree, lo, hi = self.tree, self.ex.lo, self.ex.hi
            ops, known = [], {(0, g): (g - lo if g < filled else None) for g in range(lo, hi)}
            slots = [tree.plan(k, j, known, ops) for k, j in tree.frontier(lo, hi)]
            adds = np.array(ops, dtype=np.intp).reshape(-1, 2)
            loss_ops = []
            loss_root = tree.plan(tree.depth, 0, {(0, g): (g if g < filled else None)
                                                   for g in range(self.G)}, loss_ops)
            plan = self.plans[filled] = (adds, slots, loss_ops, loss_root)
        return plan

    def epochs(self, epochs, interrupted, verbose):
        try:
            return self._epochs(epochs, interrupted, verbose)
        finally:
            self._keep_gradients()

    def _keep_gradients(self):
        """The model's gradient arrays hold the last step's gradient (l2 term included)."""
        if self.root is not None:
            off = 0
            for g in self.grads:
                g.reshape(-1)[...] = self.root[off:off + g.size]
                off += g.size

    def _epochs(self, epochs, interrupted, verbose):
        model, optimizer, ex = self.model, self.optimizer, self.ex
        lo, hi = ex.lo, ex.hi
        for epoch in range(epochs):
            for cb in self.callbacks:
                cb.on_epoch_begin(epoch, {})
            perms = ([model._shuffle_rng.permutation(m) for m in self.sizes]
                     if self.shuffle else None)
            for i, g in enumerate(range(lo, hi)):
                self.order[self.starts[i]:self.starts[i + 1]] = self.starts[i] + (
                    perms[g] if perms is not None else np.arange(self.sizes[g]))
            if self.w is not None:
                self._weighted_scales()
            lr = optimizer.learning_rates(1)[0]
            sums = np.zeros((1, 3))
            self.fresh = True                 # measure the update's bounds at the next apply
            for b in range(self.n_batches):
                status, value = self._step(epoch, b, lr, interrupted)
                if status == "stop":
                    if b > 0:                     # end the epoch where the steps stopped
                        self._end_epochs(epoch, sums)
                    return self._stopped(interrupted, verbose)
                if status == "diverged":
                    self._diverged(value, b, epoch)
                    return
                if status == "skipped":
                    continue
                nb, frac = value[1], value[2]
                sums[0] += (value[0] * nb, nb, frac * nb)
            self._end_epochs(epoch, sums)
            stop = self._agree_stop(interrupted)
            if stop:
                return self._stopped(interrupted, verbose)

    def _stopped(self, interrupted, verbose):
        if interrupted():
            self.model.history.interrupted = True
            if verbose:
                print("interrupted: training stopped after a complete step")

    def _agree_stop(self, interrupted):
        """Every process stops when one was asked to (Ctrl-C, a callback)."""
        want = 1.0 if (self.model.stop_training or interrupted()) else 0.0
        flags = self.ex.gather(np.array([want]), "stop")
        return bool(flags[:, 0].max())

    def _weighted_scales(self):
        """This epoch's s_i = w_i / W (aligned with order), W the tree sum of the shards'
        sums of w in the batch; a batch whose W is 0 is skipped."""
        ex, G, tree, S = self.ex, self.G, self.tree, self.S
        nbat = self.n_batches
        msg = np.zeros(nbat * S)
        for i in range(S):
            for b in range(nbat):
                start, count = self.shards[b, i]
                msg[b * S + i] = float(np.sum(self.w[self.order[start:start + count]]))
        allw = ex.gather(msg, "sample weights")
        leaf = allw.reshape(ex.size, nbat, S).transpose(1, 0, 2).reshape(nbat, G)
        ws = self.w[self.order]
        for b in range(nbat):
            known = {(0, g): (float(leaf[b, g]) if g < self.filled[b] else None)
                     for g in range(G)}
            W = tree.root(known)
            self.skipped[b] = not W
            if W:
                for i in range(S):
                    start, count = self.shards[b, i]
                    np.divide(ws[start:start + count], W, out=self.scale[start:start + count])

    def _step(self, epoch, b, lr, interrupted):
        """Global batch b. Returns (status, (loss, rows, accuracy) | loss): status
        "ok", "skipped" (sample weights 0), "diverged" or "stop"."""
        model, ex, plan = self.model, self.ex, self.plan
        stop = model.stop_training or interrupted()
        nb = self.batch_rows[b]
        if self.batch_events:
            for cb in self.callbacks:
                cb.on_train_batch_begin(b, dict(epoch=epoch, size=nb))
        skipped = self.skipped[b]
        adds, slots, loss_ops, loss_root = self._plan_for(self.filled[b])
        header = self.header              # (Python floats below: cheaper than NumPy's)
        if not skipped and not stop:
            plan.shard_gradients(self.X, self.t, self.y, self.order, self.scale,
                                 self.shards[b], self.leaves, adds, self.results,
                                 self.n_threads)
            res = self.results.tolist()
            count = 0
            for (_, _, acc), m in zip(res, self.counts[b]):
                if m:
                    count += round(acc * m * self.k)
            header[:] = [float(count), 0.0] + [loss for _, loss, _ in res]
        else:
            header[:] = 0.0
            header[1] = 1.0 if stop else 0.0
        rows = ex.start(header, skipped).tolist()
        if any(row[1] for row in rows):
            return "stop", None
        if skipped:
            return "skipped", None
        losses = [v for row in rows for v in row[2:]]      # shard g = rank * S + i
        for i, j in loss_ops:
            losses[i] = losses[i] + losses[j]
        value = losses[loss_root] + (self._penalty() if model.l2 else 0.0)
        if not math.isfinite(value):
            return "diverged", value
        self.root = root = ex.root(self.filled[b], slots)
        keep = not (self.fresh or self.batch_events)
        self.fresh = False
        status, step = plan.apply_from(root, lr, self.optimizer.t, not ex.l2_in_root, keep,
                                       self.n_threads)
        if status != 0:
            self.fresh = True
            return "diverged", value
        self.optimizer.advance(steps=step - self.optimizer.t)
        frac = sum(row[0] for row in rows) / (nb * self.k) if self.loss.classification else 0.0
        if self.batch_events:
            self._keep_gradients()
            for cb in self.callbacks:
                cb.on_train_batch_end(b, dict(epoch=epoch, size=nb, loss=value))
        return "ok", (value, nb, frac)

    def _penalty(self):
        """1/2 l2 sum ||W||^2, computed as reference.StepPlan does."""
        l2 = self.model.l2
        if not l2:
            return 0.0
        return sum(0.5 * l2 * float(np.sum(layer.weight.astype(np.float64) ** 2))
                   for layer in self.model.layers)
