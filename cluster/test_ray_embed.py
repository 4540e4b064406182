#!/usr/bin/env python3
"""A Ray cluster on this machine (a head and two 1-CPU worker nodes, Ray's
`cluster_utils.Cluster`) embeds a small catalog in shards through
cluster/ray_embed.py; the site built from the shards must be the same,
file for file and byte for byte, as a one-machine `embed` and
`build --vectors`. Run by `./build.sh test` (which installs Ray):

    LOOKALIKE_BIN=... LOOKALIKE_DATA=../shared/data python3 cluster/test_ray_embed.py
"""

import csv
import filecmp
import os
import subprocess
import sys
import tempfile

# Every node binds to 127.0.0.1 (without this Ray picks the machine's
# interface address, which a sandbox may not route).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ray_embed  # noqa: E402

PRODUCTS = 30
SHARDS = 4


def small_catalog(data, folder):
    """The first products of the shared fashion catalog, with absolute
    image paths (the shards run in other working directories)."""
    source = os.path.join(data, "fashion-product-images", "labels.csv")
    path = os.path.join(folder, "catalog.csv")
    with open(source, newline="") as f, open(path, "w", newline="") as out:
        rows = csv.DictReader(f)
        writer = csv.DictWriter(out, fieldnames=rows.fieldnames)
        writer.writeheader()
        for i, row in enumerate(rows):
            if i == PRODUCTS:
                break
            row["file"] = os.path.join(os.path.dirname(source), row["file"])
            writer.writerow(row)
    return path


def tree(folder):
    return sorted(
        os.path.relpath(os.path.join(root, name), folder)
        for root, _, names in os.walk(folder)
        for name in names
    )


def main():
    binary = os.environ["LOOKALIKE_BIN"]
    data = os.environ.get("LOOKALIKE_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    options = ["--id-col", "product_id", "--image-col", "file", "--label-col", "articleType", "--layout", "paged", "--list-size", "4"]
    with tempfile.TemporaryDirectory(prefix="lookalike-ray-") as work:
        catalog = small_catalog(data, work)

        # One machine.
        single = os.path.join(work, "single")
        subprocess.run([binary, "embed", "--catalog", catalog, "--out", single, *ray_embed.embed_options(options)], check=True)
        one_site = os.path.join(work, "site-one")
        subprocess.run(
            [binary, "build", "--catalog", catalog, "--out", one_site, *options,
             "--vectors", os.path.join(single, "vectors.npy"), "--ids", os.path.join(single, "ids.txt")],
            check=True,
        )

        # A head that runs no task and two 1-CPU workers.
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        try:
            cluster_site = os.path.join(work, "site-cluster")
            nodes = ray_embed.main([
                "--catalog", catalog, "--out", os.path.join(work, "cluster"), "--shards", str(SHARDS),
                "--site", cluster_site, "--lookalike", binary, "--address", cluster.address, "--", *options,
            ])
        finally:
            import ray

            ray.shutdown()
            cluster.shutdown()

        worker_ids = {w.node_id for w in workers}
        assert nodes <= worker_ids, f"tasks ran on {nodes}, not only on the workers {worker_ids}"
        assert len(nodes) == 2, f"the shards ran on {len(nodes)} node(s), not on both workers"

        one, other = tree(one_site), tree(cluster_site)
        assert one == other, f"different files: {sorted(set(one) ^ set(other))}"
        assert any(p.endswith("pages.lkp") for p in one), "the site is paged"
        _, mismatch, errors = filecmp.cmpfiles(one_site, cluster_site, one, shallow=False)
        assert not mismatch and not errors, f"files differ: {mismatch + errors}"
        print(f"ray cluster test: {SHARDS} shards of {PRODUCTS} products on 2 worker nodes; "
              f"the site ({len(one)} files) is identical to a one-machine build")


if __name__ == "__main__":
    main()
