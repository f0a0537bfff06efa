"""The loader's images/s from several source trees of dataio (e.g. before and after a change), in one run, as
ratios to the first tree: the same packed ImageNet-shaped photo set (``common.photo_set``), the same workloads,
each rep running every tree in turn (rotated start) in a fresh subprocess whose ``dataio`` is that tree's (its own
built ``dataio._native``).

Workloads: the fast path at 224 px, batch 64, ``num_workers`` = cores, fixed settings (no autotuning), for the
native kernel (train: RandomResizedCrop + flip; val: resize + centre crop) and the Python decode path (train).

    python benchmarks/ab_loader.py --tree before=/path/to/old/checkout --tree after=. [--images 1200] [--reps 5]

Each tree needs ``dataio/_native*.so`` built in place (``python setup.py build_ext --inplace``). Writes
benchmarks/results/ab_loader.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, WORK, machine, markdown_table, photo_set

WORKLOADS = (("native train", True, True), ("native val", True, False), ("python train", False, True))

_CHILD = r"""
import json, os, sys, time
import dataio
from dataio.loaders import native
ds = dataio.open_dataset(sys.argv[1])
workers, batch = int(sys.argv[2]), int(sys.argv[3])
out = {"dataio": dataio.__file__, "native": native.AVAILABLE}
for name, use_native, train in json.loads(sys.argv[4]):
    pipe = dataio.ImagePipeline(train=train, size=224, native=use_native)
    loader = dataio.DataLoader(ds, batch_size=batch, shuffle=True, pipeline=pipe, seed=0, num_workers=workers,
                               prefetch_factor=4, autotune=False)
    it = iter(loader)
    next(it)  # start-up is not steady-state throughput
    n, t = 0, time.perf_counter()
    for images, _ in it:
        n += len(images)
    out[name] = n / (time.perf_counter() - t)
    loader.runtime.close()
print(json.dumps(out))
"""


def run_tree(tree: Path, dataset: Path, workers: int, batch: int) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(tree)
    args = [str(dataset), str(workers), str(batch), json.dumps(WORKLOADS)]
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *args], cwd=tree, env=env, capture_output=True, text=True, timeout=1800
    )
    if done.returncode:
        raise RuntimeError(f"{tree}: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(result["dataio"]).resolve().is_relative_to(tree.resolve()) or not result["native"]:
        raise RuntimeError(f"{tree}: dataio came from {result['dataio']} (native {result['native']})")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tree", action="append", required=True, metavar="NAME=PATH", help="a source tree (repeatable)")
    p.add_argument("--images", type=int, default=1200)
    p.add_argument("--classes", type=int, default=20)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    p.add_argument("--out", type=Path, default=RESULTS / "ab_loader.md")
    args = p.parse_args()
    trees = [(name, Path(path).resolve()) for name, _, path in (t.partition("=") for t in args.tree)]

    import dataio
    from dataio.pack import PackOptions, pack

    src = photo_set(args.images, args.classes)
    dataset = WORK / f"ab-packed-{args.images}-{args.classes}"
    if not (dataset / "manifest.json").exists():
        pack(src, dataset, PackOptions(shard_size=64 << 20, workers=2))
    rates: dict[str, dict[str, list[float]]] = {name: {w: [] for w, *_ in WORKLOADS} for name, _ in trees}
    for rep in range(args.reps):
        for k in range(len(trees)):
            name, tree = trees[(rep + k) % len(trees)]
            got = run_tree(tree, dataset, args.workers, args.batch_size)
            for w, *_ in WORKLOADS:
                rates[name][w].append(got[w])
            print(f"rep {rep} {name}: " + ", ".join(f"{w} {got[w]:.0f}/s" for w, *_ in WORKLOADS), flush=True)
    first = trees[0][0]
    rows = []
    for name, _ in trees:
        row = [name]
        for w, *_ in WORKLOADS:
            med = statistics.median(rates[name][w])
            base = statistics.median(rates[first][w])
            spread = f"{min(rates[name][w]):.0f}–{max(rates[name][w]):.0f}"
            row.append(f"{med:.0f} ({spread}), {med / base:.2f}×")
        rows.append(row)
    lines = [
        "# Loader images/s, tree against tree (benchmarks/ab_loader.py)",
        "",
        f"{machine()}; {args.images} ImageNet-shaped photo JPEGs, 224 px, batch {args.batch_size}, "
        f"{args.workers} decode threads, fixed settings; median of {args.reps} alternating reps (range), "
        f"ratio to `{first}`. dataio {dataio.__version__ if hasattr(dataio, '__version__') else ''}".rstrip(),
        "",
        *(f"- `{name}`: {tree}" for name, tree in trees),
        "",
        markdown_table(["tree", *(w for w, *_ in WORKLOADS)], rows),
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
