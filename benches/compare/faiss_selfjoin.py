#!/usr/bin/env python3
"""faiss side of `biomatch bench dedup`: the same N:N question asked of faiss.

Loads row-major float32 unit vectors (.npy), builds an IndexFlatIP, and
answers "every pair with inner product at or above T" with a range search
of the whole set against itself (faiss's exact self-join). Prints one JSON
object: seconds for the search, distinct pairs (a < b) found, threads.
faiss comes from the `faiss-cpu` wheel (scripts/setup-faiss).
"""
import argparse
import json
import time

import faiss
import numpy as np


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--vectors", required=True)
    p.add_argument("--threshold", type=float, required=True)
    p.add_argument("--threads", type=int, required=True)
    a = p.parse_args()
    faiss.omp_set_num_threads(a.threads)
    x = np.ascontiguousarray(np.load(a.vectors), dtype="float32")
    n, d = x.shape
    index = faiss.IndexFlatIP(d)
    index.add(x)
    # faiss keeps scores strictly above the radius; step just below T so
    # that scores equal to T count, as in biomatch.
    radius = float(np.nextafter(np.float32(a.threshold), np.float32(-1)))
    t0 = time.perf_counter()
    lims, _, ids = index.range_search(x, radius)
    seconds = time.perf_counter() - t0
    rows = np.repeat(np.arange(n), np.diff(lims).astype(np.int64))
    pairs = int((ids > rows).sum())
    print(json.dumps({
        "faiss_version": faiss.__version__,
        "n": n,
        "dim": d,
        "threads": a.threads,
        "seconds": seconds,
        "pairs": pairs,
    }))


if __name__ == "__main__":
    main()
