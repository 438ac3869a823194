"""Does a loss kernel gain from threads, and from what size? (LOSS_PARALLEL_MIN)

    python bench/losses.py                    # float32, 1 and 2 threads
    python bench/losses.py --threads 1,2,4 --dtype float64

Best of --repeat calls per cell, in microseconds, beside the NumPy twin. The
kernels stay on one thread below LOSS_PARALLEL_MIN = 65536 elements
(N*K), so shapes below it show the serial time in every thread column.
"""
import argparse
import time

import numpy as np

from nncore import functional as F

SHAPES = [(128, 10), (256, 100), (256, 256), (1024, 64), (512, 256), (2048, 1000)]


def best_of(f, repeat):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best * 1e6


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--repeat", type=int, default=9)
    args = p.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    rng = np.random.default_rng(0)
    print(f"dtype {args.dtype}, best of {args.repeat}, microseconds per call")
    print(f"{'loss':<24}{'N x K':>12}" + "".join(f"{f'{t} thr':>10}" for t in threads)
          + f"{'numpy':>10}")
    for n, k in SHAPES:
        o = rng.standard_normal((n, k)).astype(args.dtype)
        g = np.empty_like(o)
        labels = rng.integers(0, k, n)
        probs = rng.random((n, k)).astype(args.dtype)
        for name in F.LOSSES:
            target = labels if name in ("softmax_cross_entropy", "hinge") else probs
            row = [best_of(lambda: F.loss_forward_backward(name, o, target, g, n_threads=t),
                           args.repeat) for t in threads]
            row.append(best_of(lambda: F.loss_forward_backward(name, o, target, g,
                                                               backend="numpy"), args.repeat))
            print(f"{name:<24}{f'{n}x{k}':>12}" + "".join(f"{x:>10.0f}" for x in row))


if __name__ == "__main__":
    main()
