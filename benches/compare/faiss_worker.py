#!/usr/bin/env python3
"""faiss side of `biomatch bench compare` (benches/compare/run).

A long-lived worker: `biomatch bench compare` starts it once per dataset
and sends it one JSON request per line on stdin, alternating with its own
measurements; the worker answers one JSON line on stdout per request.

At start it loads the base vectors and queries (.npy, float32, unit rows),
computes the exact top-k of every query with IndexFlatIP (the ground
truth), writes it to --gt (int64 .npy) and answers {"ready": ...}.

Requests:
  {"index": NAME, "mode": "single"|"batch", "batch": B, "k": K,
   "nprobe": P?, "ef": E?, "queries": Q?}
      searches the first Q queries (all by default) one at a time or in
      batches of B; answers queries/s, recall@K against the ground truth,
      the index's bytes and build seconds (0 when reused).
  {"index": NAME, "mode": "range", "threshold": T}
      range search of all queries at inner product >= T; answers
      queries/s and the hits found.
NAME: Flat (IndexFlatIP), SQfp16, SQ8 (IndexScalarQuantizer, inner
product), HNSW32 (IndexHNSWFlat, M = 32, inner product), IVF4096
(IndexIVFFlat over 4096 lists, inner product; k-means trained on 64
vectors per list, 10 iterations). Only the index in use is kept in memory; HNSW and IVF
indexes, slow to build, are cached in --cache.

faiss comes from the `faiss-cpu` wheel (scripts/setup-faiss).
"""
import argparse
import json
import os
import sys
import time

import faiss
import numpy as np


def build(name, x, cache, nlist):
    d = x.shape[1]
    path = os.path.join(cache, f"{name}.faiss")
    if name in ("HNSW32", f"IVF{nlist}") and os.path.exists(path):
        return faiss.read_index(path), 0.0
    t0 = time.perf_counter()
    if name == "Flat":
        index = faiss.IndexFlatIP(d)
    elif name == "SQfp16":
        index = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16,
                                           faiss.METRIC_INNER_PRODUCT)
    elif name == "SQ8":
        index = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit,
                                           faiss.METRIC_INNER_PRODUCT)
    elif name == "HNSW32":
        index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
    elif name == f"IVF{nlist}":
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = 10
    else:
        raise ValueError(f"unknown index {name}")
    if not index.is_trained:
        rng = np.random.default_rng(7)
        sample = min(len(x), 64 * getattr(index, "nlist", 1))
        rows = np.sort(rng.choice(len(x), size=sample, replace=False))
        index.train(np.ascontiguousarray(x[rows]))
    for start in range(0, len(x), 65536):
        index.add(np.ascontiguousarray(x[start:start + 65536]))
    seconds = time.perf_counter() - t0
    if name in ("HNSW32", f"IVF{nlist}"):
        faiss.write_index(index, path + ".tmp")
        os.replace(path + ".tmp", path)
    return index, seconds


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True)
    p.add_argument("--queries", required=True)
    p.add_argument("--gt", required=True)
    p.add_argument("--cache", required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--nlist", type=int, default=4096)
    a = p.parse_args()
    faiss.omp_set_num_threads(a.threads)
    x = np.load(a.base, mmap_mode="r")
    q = np.ascontiguousarray(np.load(a.queries), dtype="float32")
    t0 = time.perf_counter()
    flat = faiss.IndexFlatIP(x.shape[1])
    for start in range(0, len(x), 65536):
        flat.add(np.ascontiguousarray(x[start:start + 65536]))
    _, gt = flat.search(q, a.k)
    del flat
    np.save(a.gt, gt.astype(np.int64))
    print(json.dumps({"ready": True, "faiss_version": faiss.__version__,
                      "gt_seconds": time.perf_counter() - t0}), flush=True)

    current = (None, None)
    for line in sys.stdin:
        req = json.loads(line)
        name = req["index"]
        build_s = 0.0
        if current[0] != name:
            current = (None, None)
            index, build_s = build(name, x, a.cache, a.nlist)
            current = (name, index)
        index = current[1]
        if "nprobe" in req:
            index.nprobe = req["nprobe"]
        if "ef" in req:
            index.hnsw.efSearch = req["ef"]
        out = {"index": name, "build_s": build_s,
               "bytes": int(faiss.serialize_index(index).nbytes)
               if req.get("bytes") else None}
        if req["mode"] == "range":
            radius = float(np.nextafter(np.float32(req["threshold"]), np.float32(-1)))
            t = time.perf_counter()
            lims, _, _ = index.range_search(q, radius)
            out["qps"] = len(q) / (time.perf_counter() - t)
            out["hits"] = int(lims[-1])
        else:
            k = req["k"]
            nq = min(req.get("queries", len(q)), len(q))
            step = 1 if req["mode"] == "single" else req["batch"]
            found = np.empty((nq, k), dtype=np.int64)
            t = time.perf_counter()
            for start in range(0, nq, step):
                _, ids = index.search(q[start:start + step], k)
                found[start:start + step] = ids
            out["qps"] = nq / (time.perf_counter() - t)
            hits = sum(len(set(found[i]) & set(gt[i, :k])) for i in range(nq))
            out["recall"] = hits / (nq * k)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
