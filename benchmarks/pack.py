"""Pack throughput vs simply reading the same files (1 and 2 workers, cold and warm page cache).

    python benchmarks/pack.py [--images 4000] [--classes 40] [--repeats 3]

Writes benchmarks/results/pack.md and pack.png. Goal (issue 2): packing without re-encode runs at >= 0.8x the
rate of just reading the source files.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, WORK, drop_cache, machine, markdown_table, median_time, synth_set

from dataio.pack import PackOptions, pack


def read_all(files: list[Path], threads: int) -> None:
    """The baseline: each of ``threads`` threads opens and reads its contiguous share of the files."""

    def read(part: list[Path]) -> None:
        for p in part:
            with open(p, "rb") as f:
                f.read()

    step = -(-len(files) // threads)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(read, [files[i : i + step] for i in range(0, len(files), step)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=4000)
    ap.add_argument("--classes", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shard-size", type=int, default=32 * 10**6)
    args = ap.parse_args()

    src = synth_set(args.images, args.classes)
    files = sorted(src.rglob("*.JPEG"))
    n, nbytes = len(files), sum(p.stat().st_size for p in files)
    out = WORK / "pack-out"
    rows, ratios, plot = [], {}, {}
    for cache in ("cold", "warm"):
        def before(cache: str = cache) -> None:
            shutil.rmtree(out, ignore_errors=True)
            if cache == "cold":
                drop_cache(files)
            else:
                read_all(files, 2)

        for workers in (1, 2):
            t_read = median_time(lambda w=workers: read_all(files, w), args.repeats, before)
            opts = PackOptions(shard_size=args.shard_size, workers=workers)
            t_pack = median_time(lambda o=opts: pack(src, out, o), args.repeats, before)
            ratio = t_read / t_pack
            ratios[(cache, workers)] = ratio
            plot[(cache, workers)] = (n / t_read, n / t_pack)
            for what, t in (("read files", t_read), ("dataio pack", t_pack)):
                rows.append([cache, workers, what, f"{n / t:,.0f}", f"{nbytes / 1e6 / t:,.0f}",
                             f"{ratio:.2f}" if what == "dataio pack" else ""])
    reenc = {}
    for workers in (1, 2):
        opts = PackOptions(shard_size=2 * 10**6, workers=workers, max_size=256, quality=85)
        reenc[workers] = median_time(lambda o=opts: pack(src, out, o), max(1, args.repeats - 1),
                                     lambda: shutil.rmtree(out, ignore_errors=True))
    shutil.rmtree(out, ignore_errors=True)

    goal = min(v for (cache, _), v in ratios.items() if cache == "cold")
    text = [
        "# Pack throughput",
        "",
        f"`python benchmarks/pack.py --images {args.images} --classes {args.classes} --repeats {args.repeats}` on "
        f"{machine()}. Source: a `dataio synth` ImageFolder, {n} JPEGs, {nbytes / 1e6:.1f} MB "
        f"(mean {nbytes / n / 1e3:.1f} KB); shard size {args.shard_size / 1e6:.0f} MB; median of {args.repeats} runs.",
        "'read files' opens and reads every source file (threads = workers); 'dataio pack' is the whole pack: list,",
        "plan, read, validate, checksum (CRC-32 per sample, sha256 per shard), write shards + index + manifest,",
        "including worker start-up. 'cold' evicts the source files from the page cache before each run",
        "(POSIX_FADV_DONTNEED), 'warm' reads them first.",
        "",
        markdown_table(["cache", "workers", "what", "samples/s", "MB/s", "pack ÷ read"], rows),
        "",
        f"**Goal ≥ 0.8× the raw read rate, cold cache: {'met' if goal >= 0.8 else 'NOT met'}** "
        f"(lowest cold ratio {goal:.2f}). Cold is the case the goal is about: a dataset is packed once, straight "
        "from disk or a parallel filesystem; the packer keeps ~128 reads announced to the kernel "
        "(POSIX_FADV_WILLNEED) so the disk works ahead of the single writer thread.",
        "",
        f"Warm cache (ratio {ratios[('warm', 1)]:.2f} / {ratios[('warm', 2)]:.2f}): reading page-cached files is a "
        "memcpy, while packing must also CRC-32 every sample, sha256 every shard and write every byte to a new "
        "file (page allocation), ~125 µs per 40 KB sample on one core here. That is CPU-bound and not met: the "
        "remedy is more workers (processes scale until the disk or the cores are saturated), not a faster loop.",
        "",
        "Re-encode (`--max-size 256 --quality 85`, 2 MB shards so both workers get work; CPU-bound decode + "
        "resize + encode): "
        f"1 worker {n / reenc[1]:,.0f} samples/s, 2 workers {n / reenc[2]:,.0f} samples/s "
        f"(speed-up {reenc[1] / reenc[2]:.2f}× on 2 cores).",
        "",
        "![pack throughput](pack.png)",
        "",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pack.md").write_text("\n".join(text))
    _plot(plot, RESULTS / "pack.png")
    print("\n".join(text))


def _plot(data: dict[tuple[str, int], tuple[float, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{c}\n{w} worker{'s' if w > 1 else ''}" for c, w in data]
    xs = range(len(labels))
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.bar([x - 0.2 for x in xs], [v[0] for v in data.values()], 0.4, label="read the files")
    ax.bar([x + 0.2 for x in xs], [v[1] for v in data.values()], 0.4, label="dataio pack")
    ax.set_xticks(list(xs), labels)
    ax.set_ylabel("samples/s")
    ax.set_title("dataio pack vs raw file reads")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
