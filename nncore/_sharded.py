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
"""
import math


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


class LocalExchange:
    """One process owns every shard: the exchanges are the identity."""

    rank, size = 0, 1

    def __init__(self, grad_shards):
        self.G = grad_shards
        self.lo, self.hi = 0, grad_shards

    def setup(self, n_local, crc):
        """The rows of every shard (this process holds all of them)."""
        return shard_sizes(n_local, self.G)

    def gather(self, msg, what):
        """Every process's float64 vector msg, as rows of one (size, len) array."""
        return msg[None, :]

    def reduce(self, tree, values, n, dtype, empty):
        """The root of the tree from this process's frontier values (all of them)."""
        return values[0]

    def close(self):
        pass
