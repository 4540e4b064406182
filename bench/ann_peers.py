"""Runs the ANN peers of `lookalike-bench ann` on the same data and queries.

Benchmark-only: lookalike never depends on these libraries. Reads the base
vectors and queries (.npy, float32), and for each peer named on the command
line builds an index, saves it to measure its bytes, and times single-threaded
batch queries over a sweep of its search parameter. Every peer gets one
thread for queries (the ann-benchmarks protocol) and its batch API, which
spares it Python's per-call overhead; builds use every core, as ours do.

Usage: ann_peers.py BASE.npy QUERIES.npy METRIC K PEER[,PEER...] EF[,EF...]
METRIC is euclidean or angular. Prints one JSON object per peer, one a line:
{"peer", "config", "build_s", "bytes", "runs": [{"param", "qps", "neighbors"}]}.
"""
import json
import os
import sys
import tempfile
import time

import numpy as np

# The graph peers' ef sweep: the same as ours (the last argument).
EF_SWEEP = []


def timed_batch(search, queries):
    started = time.perf_counter()
    ids = search(queries)
    return len(queries) / (time.perf_counter() - started), np.asarray(ids).astype(np.int64).tolist()


def saved_bytes(save):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "index")
        save(path)
        return os.path.getsize(path)


def run_annoy(base, queries, metric, k):
    from annoy import AnnoyIndex

    n_trees = 50
    index = AnnoyIndex(base.shape[1], metric)
    for i in range(base.shape[0]):
        index.add_item(i, base[i])
    started = time.perf_counter()
    index.build(n_trees, n_jobs=-1)
    build_s = time.perf_counter() - started
    runs = []
    query_list = [q.tolist() for q in queries]
    for search_k in [200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200]:
        started = time.perf_counter()
        ids = [index.get_nns_by_vector(q, k, search_k=search_k) for q in query_list]
        runs.append({"param": search_k, "qps": len(ids) / (time.perf_counter() - started), "neighbors": ids})
    return f"annoy 1.17 ({n_trees} trees; search_k)", build_s, saved_bytes(index.save), runs


def run_hnswlib(base, queries, metric, k):
    import hnswlib

    index = hnswlib.Index(space="l2" if metric == "euclidean" else "cosine", dim=base.shape[1])
    started = time.perf_counter()
    index.init_index(max_elements=base.shape[0], M=16, ef_construction=200)
    index.add_items(base, num_threads=os.cpu_count())
    build_s = time.perf_counter() - started
    runs = []
    for ef in EF_SWEEP:
        if ef < k:
            continue
        index.set_ef(ef)
        qps, ids = timed_batch(lambda q: index.knn_query(q, k=k, num_threads=1)[0], queries)
        runs.append({"param": ef, "qps": qps, "neighbors": ids})
    return "hnswlib (M 16, ef_construction 200; ef)", build_s, saved_bytes(index.save_index), runs


def faiss_data(base, metric):
    if metric == "angular":
        base = base / np.linalg.norm(base, axis=1, keepdims=True).clip(1e-12)
    return np.ascontiguousarray(base, dtype=np.float32)


def run_faiss_hnsw(base, queries, metric, k):
    import faiss

    data, queries = faiss_data(base, metric), faiss_data(queries, metric)
    faiss.omp_set_num_threads(os.cpu_count())
    index = faiss.IndexHNSWFlat(data.shape[1], 16)
    index.hnsw.efConstruction = 200
    started = time.perf_counter()
    index.add(data)
    build_s = time.perf_counter() - started
    faiss.omp_set_num_threads(1)
    runs = []
    for ef in EF_SWEEP:
        if ef < k:
            continue
        index.hnsw.efSearch = ef
        qps, ids = timed_batch(lambda q: index.search(q, k)[1], queries)
        runs.append({"param": ef, "qps": qps, "neighbors": ids})
    return "faiss HNSW (M 16, efConstruction 200; efSearch)", build_s, saved_bytes(lambda p: faiss.write_index(index, p)), runs


def run_faiss_ivf(base, queries, metric, k):
    import faiss

    data, queries = faiss_data(base, metric), faiss_data(queries, metric)
    faiss.omp_set_num_threads(os.cpu_count())
    nlist = int(4 * np.sqrt(data.shape[0]))
    quantizer = faiss.IndexFlatL2(data.shape[1])
    index = faiss.IndexIVFFlat(quantizer, data.shape[1], nlist)
    started = time.perf_counter()
    index.train(data)
    index.add(data)
    build_s = time.perf_counter() - started
    faiss.omp_set_num_threads(1)
    runs = []
    for nprobe in [1, 2, 4, 8, 16, 32, 64, 128, 256]:
        index.nprobe = nprobe
        qps, ids = timed_batch(lambda q: index.search(q, k)[1], queries)
        runs.append({"param": nprobe, "qps": qps, "neighbors": ids})
    return f"faiss IVF-Flat ({nlist} lists; nprobe)", build_s, saved_bytes(lambda p: faiss.write_index(index, p)), runs


def run_usearch(base, queries, metric, k):
    from usearch.index import Index

    index = Index(ndim=base.shape[1], metric="l2sq" if metric == "euclidean" else "cos", connectivity=16, expansion_add=128)
    started = time.perf_counter()
    index.add(np.arange(base.shape[0]), base, threads=os.cpu_count())
    build_s = time.perf_counter() - started
    runs = []
    for ef in EF_SWEEP:
        if ef < k:
            continue
        index.expansion_search = ef
        qps, ids = timed_batch(lambda q: index.search(q, k, threads=1).keys, queries)
        runs.append({"param": ef, "qps": qps, "neighbors": ids})
    dtype = str(index.dtype).split(".")[-1]
    return f"usearch {dtype} (connectivity 16, expansion_add 128; expansion_search)", build_s, saved_bytes(index.save), runs


def run_voyager(base, queries, metric, k):
    from voyager import Index, Space

    space = Space.Euclidean if metric == "euclidean" else Space.Cosine
    index = Index(space, num_dimensions=base.shape[1], M=16, ef_construction=200)
    started = time.perf_counter()
    index.add_items(base, num_threads=os.cpu_count())
    build_s = time.perf_counter() - started
    runs = []
    for ef in EF_SWEEP:
        if ef < k:
            continue
        qps, ids = timed_batch(lambda q: index.query(q, k=k, num_threads=1, query_ef=ef)[0], queries)
        runs.append({"param": ef, "qps": qps, "neighbors": ids})
    return "voyager (M 16, ef_construction 200; query_ef)", build_s, saved_bytes(index.save), runs


PEERS = {
    "annoy": run_annoy,
    "hnswlib": run_hnswlib,
    "faiss-hnsw": run_faiss_hnsw,
    "faiss-ivf": run_faiss_ivf,
    "usearch": run_usearch,
    "voyager": run_voyager,
}


def main():
    base_path, query_path, metric, k, peers, sweep = sys.argv[1:7]
    EF_SWEEP.extend(int(ef) for ef in sweep.split(","))
    base = np.ascontiguousarray(np.load(base_path), dtype=np.float32)
    queries = np.ascontiguousarray(np.load(query_path), dtype=np.float32)
    for peer in peers.split(","):
        print(f"  {peer}: building", file=sys.stderr, flush=True)
        config, build_s, size, runs = PEERS[peer](base, queries, metric, int(k))
        print(json.dumps({"peer": peer, "config": config, "build_s": build_s, "bytes": size, "runs": runs}), flush=True)


if __name__ == "__main__":
    main()
