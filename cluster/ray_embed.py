#!/usr/bin/env python3
"""Embed a catalog on a Ray cluster, then build its site from the vectors.

Embedding is the expensive part of a build (a CNN per image); everything
after it is a few minutes on one machine even for a million products. This
driver fans `lookalike embed --shard I/N` out as Ray tasks, one per shard,
spread over the cluster's nodes; each task returns its shard's vectors and
ids to the driver, which writes them under OUT/shards/ and, with --site,
runs `lookalike build --vectors ... --ids ...` with the shards in order.
The site is then the same, byte for byte, as a one-machine
`lookalike embed` followed by `lookalike build --vectors`.

    python3 cluster/ray_embed.py --catalog shop.csv --out work --shards 8 \\
        --site site -- --id-col sku --image-col picture --label-col category

On a real cluster (docs/scale.md): start Ray on the nodes (`ray start
--head` on one, `ray start --address HEAD:6379` on the others), make the
`lookalike` binary and the catalog's images reachable from every node (an
installed binary and image URLs, or a shared filesystem), and run this
driver with `--address auto` on the head, or `--address ray://HEAD:10001`
from elsewhere. Without --address it starts a local Ray instance.
"""

import argparse
import os
import subprocess
import sys
import time


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", required=True, help="the catalog file (CSV, JSON or JSON Lines)")
    parser.add_argument("--out", required=True, help="folder for the shards' vectors and ids")
    parser.add_argument("--shards", type=int, required=True, help="how many shards (tasks) to split the catalog into")
    parser.add_argument("--site", help="also build the site into this folder from the shards")
    parser.add_argument("--lookalike", default=os.environ.get("LOOKALIKE_BIN", "lookalike"), help="the lookalike binary on every node")
    parser.add_argument("--address", help="Ray cluster to join (auto, ray://HOST:10001); default: a local instance")
    parser.add_argument("--cpus-per-task", type=float, default=1.0)
    parser.add_argument("extra", nargs="*", help="after --: options for both embed and build (--id-col, --image-col...)")
    return parser.parse_args(argv)


def embed_shard(binary, catalog, index, count, extra):
    """Runs one shard on whichever node Ray placed it; returns its output."""
    import socket
    import tempfile

    with tempfile.TemporaryDirectory(prefix="lookalike-shard-") as out:
        started = time.time()
        run = subprocess.run(
            [binary, "embed", "--catalog", catalog, "--out", out, "--shard", f"{index}/{count}", *embed_options(extra)],
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            raise RuntimeError(f"shard {index}/{count} on {socket.gethostname()}: {run.stderr.strip()[-2000:]}")
        with open(os.path.join(out, "vectors.npy"), "rb") as f:
            vectors = f.read()
        with open(os.path.join(out, "ids.txt"), "rb") as f:
            ids = f.read()
    return {"index": index, "vectors": vectors, "ids": ids, "node": ray_node_id(), "seconds": time.time() - started}


def ray_node_id():
    import ray

    return ray.get_runtime_context().get_node_id()


# Options `embed` accepts; the others (label column, layout...) are build's.
EMBED_OPTIONS = {"--id-col", "--image-col", "--model", "--batch-size", "--crops"}


def embed_options(extra):
    """The options after `--` that `embed` takes, with their values."""
    kept, i = [], 0
    while i < len(extra):
        name = extra[i].split("=", 1)[0]
        takes_value = "=" not in extra[i] and i + 1 < len(extra) and not extra[i + 1].startswith("--")
        if name in EMBED_OPTIONS:
            kept.extend(extra[i : i + (2 if takes_value else 1)])
        elif name == "--allow-private-redirects":
            kept.append(extra[i])
        i += 2 if takes_value else 1
    return kept


def main(argv):
    args = parse_args(argv)
    if args.shards < 1:
        sys.exit("--shards must be at least 1")
    import ray

    ray.init(address=args.address, log_to_driver=False)
    task = ray.remote(num_cpus=args.cpus_per_task, scheduling_strategy="SPREAD")(embed_shard)
    catalog = os.path.abspath(args.catalog)
    started = time.time()
    pending = [task.remote(args.lookalike, catalog, i, args.shards, args.extra) for i in range(args.shards)]
    shard_dir = os.path.join(args.out, "shards")
    os.makedirs(shard_dir, exist_ok=True)
    results = {}
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        result = ray.get(done[0])
        results[result["index"]] = result
        folder = os.path.join(shard_dir, f"{result['index']:05d}")
        os.makedirs(folder, exist_ok=True)
        for name in ("vectors.npy", "ids.txt"):
            with open(os.path.join(folder, name), "wb") as f:
                f.write(result["vectors" if name == "vectors.npy" else "ids"])
        print(
            f"shard {result['index'] + 1}/{args.shards} done on node {result['node'][:8]} "
            f"in {result['seconds']:.1f}s ({len(results)}/{args.shards})",
            file=sys.stderr,
        )
    nodes = {r["node"] for r in results.values()}
    print(f"embedded {args.shards} shards on {len(nodes)} nodes in {time.time() - started:.1f}s", file=sys.stderr)
    if args.address is None:
        ray.shutdown()
    if args.site:
        command = [args.lookalike, "build", "--catalog", catalog, "--out", args.site, *args.extra]
        for i in range(args.shards):
            folder = os.path.join(shard_dir, f"{i:05d}")
            command += ["--vectors", os.path.join(folder, "vectors.npy"), "--ids", os.path.join(folder, "ids.txt")]
        subprocess.run(command, check=True)
    return nodes


if __name__ == "__main__":
    main(sys.argv[1:])
