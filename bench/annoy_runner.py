"""Runs Spotify's Annoy on the same data as `lookalike bench forest`.

Benchmark-only: lookalike never depends on Annoy. Reads the base vectors and
queries (.npy, float32), builds an index with the given trees, and for each
search_k times single-threaded queries by vector. Prints one JSON object:
{"build_s", "bytes", "runs": [{"search_k", "qps", "neighbors"}]}.
"""
import json
import os
import sys
import tempfile
import time

import numpy as np
from annoy import AnnoyIndex


def main():
    base_path, query_path, metric, n_trees, k = sys.argv[1:6]
    search_ks = [int(s) for s in sys.argv[6].split(",")]
    n_trees, k = int(n_trees), int(k)
    base = np.load(base_path, mmap_mode="r")
    queries = np.load(query_path)
    index = AnnoyIndex(base.shape[1], metric)
    for i in range(base.shape[0]):
        index.add_item(i, base[i])
    started = time.perf_counter()
    index.build(n_trees, n_jobs=-1)
    build_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "index.ann")
        index.save(path)
        size = os.path.getsize(path)
    runs = []
    for search_k in search_ks:
        query_list = [q.tolist() for q in queries]
        started = time.perf_counter()
        neighbors = [index.get_nns_by_vector(q, k, search_k=search_k) for q in query_list]
        elapsed = time.perf_counter() - started
        runs.append({"search_k": search_k, "qps": len(query_list) / elapsed, "neighbors": neighbors})
    print(json.dumps({"build_s": build_s, "bytes": size, "runs": runs}))


if __name__ == "__main__":
    main()
