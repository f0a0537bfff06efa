"""Allreduce time per message size, 4 KB … 256 MB: flat vs hierarchical vs +fp16, gloo, 4 ranks as 2 nodes,
compared with the α-β model of :mod:`dataio.train.cost`.

    python benchmarks/allreduce.py [--rate 1gbit] [--delay-ms 1] [--max-mb 256]      # as root

Network: each emulated node is a network namespace with a TUN device; a userspace forwarder in this process moves
packets between the nodes' TUN devices after a fixed one-way delay (``netem`` is not available), and ``tc tbf``
caps each node's egress rate. Ranks on one node talk over that namespace's loopback (fast), ranks on different
nodes over the emulated link (slow). Without root or namespaces the run falls back to plain loopback and says so.

Method: α, β of the intra link from 2-rank allreduces inside every node at once, of the inter link from a 2-rank
allreduce between the node leaders (both ``2α + nβ``); the 4-rank flat and hierarchical times are then predicted,
not fitted. Each point: ``reps`` back-to-back calls after a barrier, the slowest rank's mean, median of three rounds.
Writes benchmarks/results/allreduce.md and allreduce.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import RESULTS, machine, markdown_table
from netem import EmulatedNetwork

from dataio.train.cost import Cluster, crossovers, fit_link, flat_time, hierarchical_time

KB, MB = 1 << 10, 1 << 20
SERIES = ("flat", "hierarchical", "flat+fp16", "hierarchical+fp16", "hier-scatter")


def sizes(min_kb: int, max_mb: int) -> list[int]:
    out, n = [], min_kb * KB
    while n <= max_mb * MB:
        out.append(n)
        n *= 4
    return out


def reps_for(nbytes: int) -> int:
    return max(1, min(20, int(8 * MB / nbytes)))


def worker(args: argparse.Namespace) -> int:
    """One rank: time every series and both link fits; rank 0 writes the JSON results."""
    import torch
    import torch.distributed as dist

    from dataio.train.comm import FlatAllreduce, HierarchicalAllreduce
    from dataio.train.topology import NodeGroups, NodeLayout

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    groups = NodeGroups(NodeLayout.contiguous(world, args.ranks_per_node))
    series = {
        "flat": FlatAllreduce(groups),
        "hierarchical": HierarchicalAllreduce(groups, "leader"),
        "flat+fp16": FlatAllreduce(groups, torch.float16),
        "hierarchical+fp16": HierarchicalAllreduce(groups, "leader", torch.float16),
        "hier-scatter": HierarchicalAllreduce(groups, "scatter"),
    }

    def timed(call, nbytes: int, active: bool) -> float:
        reps, rounds = reps_for(nbytes), []
        if active:
            call()  # warm-up
        for _ in range(3):
            dist.barrier()
            start = time.perf_counter()
            if active:
                for _ in range(reps):
                    call()
            elapsed = torch.tensor([(time.perf_counter() - start) / reps if active else 0.0], dtype=torch.float64)
            dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
            rounds.append(float(elapsed))
        return sorted(rounds)[1]

    results: dict[str, dict[str, float]] = {name: {} for name in (*SERIES, "intra-2", "inter-2")}

    def measure(nbytes: int) -> None:
        x = torch.ones(nbytes // 4)
        leader = groups.local_rank == 0  # intra: every node at once, as inside a hierarchical allreduce
        results["intra-2"][str(nbytes)] = timed(lambda: dist.all_reduce(x, group=groups.intra), nbytes, True)
        results["inter-2"][str(nbytes)] = timed(lambda: dist.all_reduce(x, group=groups.inter), nbytes, leader)
        for name, strategy in series.items():
            results[name][str(nbytes)] = timed(lambda s=strategy: s.average_(x), nbytes, True)
        if rank == 0:
            line = " ".join(f"{k} {v[str(nbytes)] * 1e3:.2f}ms" for k, v in results.items())
            print(f"{nbytes / KB:>9.0f} KB {line}", flush=True)

    for nbytes in sizes(args.min_kb, args.max_mb):
        measure(nbytes)
    if rank == 0:
        Path(args.worker_out).write_text(json.dumps(results))
    dist.barrier()
    dist.destroy_process_group()
    return 0


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def launch(args: argparse.Namespace, net: EmulatedNetwork | None, out: Path) -> dict:
    world = args.nodes * args.ranks_per_node
    master = net.addr(0) if net else "127.0.0.1"
    procs = []
    for rank in range(world):
        node = rank // args.ranks_per_node
        env = dict(
            os.environ,
            RANK=str(rank),
            WORLD_SIZE=str(world),
            MASTER_ADDR=master,
            MASTER_PORT=str(args.port),
            LOCAL_RANK=str(rank % args.ranks_per_node),
            LOCAL_WORLD_SIZE=str(args.ranks_per_node),
            GROUP_RANK=str(node),
            OMP_NUM_THREADS="1",
            GLOO_SOCKET_IFNAME=net.dev(node) if net else "lo",
        )
        cmd = [
            sys.executable,
            "-W",
            "ignore",
            __file__,
            "--worker",
            "--worker-out",
            str(out),
            "--ranks-per-node",
            str(args.ranks_per_node),
            "--min-kb",
            str(args.min_kb),
            "--max-mb",
            str(args.max_mb),
        ]
        if net:
            cmd = ["ip", "netns", "exec", net.ns(node), *cmd]
        procs.append(subprocess.Popen(cmd, env=env))
    codes = [p.wait() for p in procs]
    if any(codes):
        raise RuntimeError(f"ranks exited with {codes}")
    return json.loads(out.read_text())


# -- model, tables, plot -----------------------------------------------------------------------------------
def fmt_size(n: float) -> str:
    for unit, div in (("GB", 1 << 30), ("MB", MB), ("KB", KB)):
        if n >= div:
            return f"{n / div:.3g} {unit}"
    return f"{n:.0f} B"


def fmt_ms(t: float) -> str:
    return f"{t * 1e3:,.1f}" if t >= 0.01 else f"{t * 1e3:.2f}"


def models(cluster: Cluster) -> dict:
    return {
        "flat": lambda n: flat_time(cluster, n),
        "hierarchical": lambda n: hierarchical_time(cluster, n, "leader"),
        "flat+fp16": lambda n: flat_time(cluster, n, wire=0.5),
        "hierarchical+fp16": lambda n: hierarchical_time(cluster, n, "leader", wire=0.5),
        "hier-scatter": lambda n: hierarchical_time(cluster, n, "scatter"),
    }


def winners_measured(ns: list[int], hier: list[float], flat: list[float]) -> str:
    """Which strategy is faster, and between which measured sizes that changes."""
    wins = ["hierarchical" if h <= f else "flat" for h, f in zip(hier, flat, strict=True)]
    parts = [f"{wins[0]} faster from {fmt_size(ns[0])}"]
    for i in range(1, len(ns)):
        if wins[i] != wins[i - 1]:
            parts.append(f"{wins[i]} from between {fmt_size(ns[i - 1])} and {fmt_size(ns[i])}")
    return "; ".join(parts) + f" up to {fmt_size(ns[-1])}"


def winners_model(cluster: Cluster, lo: float, hi: float, variant: str = "leader") -> str:
    """The same for the model, with the crossover sizes."""
    h = lambda n: hierarchical_time(cluster, n, variant)  # noqa: E731
    f = lambda n: flat_time(cluster, n)  # noqa: E731
    winner = "hierarchical" if h(lo) <= f(lo) else "flat"
    parts = [f"{winner} faster from {fmt_size(lo)}"]
    for x in crossovers(h, f, lo, hi):
        winner = "flat" if winner == "hierarchical" else "hierarchical"
        parts.append(f"{winner} from {fmt_size(x)} (crossover)")
    return "; ".join(parts) + f" up to {fmt_size(hi)}"


def report(data: dict, args: argparse.Namespace, emulated: bool, seconds: float) -> tuple[str, dict]:
    """The markdown result and what the plot needs."""
    ns = sorted(int(k) for k in data["flat"])
    get = {name: [data[name][str(n)] for n in ns] for name in data}
    intra = fit_link(ns, get["intra-2"], steps=2, byte_factor=1.0)
    inter = fit_link(ns, get["inter-2"], steps=2, byte_factor=1.0)
    cluster = Cluster(args.nodes, args.ranks_per_node, intra, inter)
    model = models(cluster)
    pred = {name: [model[name](n) for n in ns] for name in SERIES}
    err = {name: [100 * (p / m - 1) for p, m in zip(pred[name], get[name], strict=True)] for name in SERIES}
    worst = {name: max(abs(e) for e in err[name]) for name in SERIES}
    n_nodes, k, p = args.nodes, args.ranks_per_node, cluster.world_size

    shown = ("flat", "hierarchical", "flat+fp16", "hierarchical+fp16")
    header = ["size"] + [f"{h} {c}" for h in ("flat", "hier", "flat+fp16", "hier+fp16") for c in ("ms", "model", "err")]
    header.append("flat ÷ hier")
    rows = []
    for i, n in enumerate(ns):
        row: list[object] = [fmt_size(n)]
        for name in shown:
            row += [fmt_ms(get[name][i]), fmt_ms(pred[name][i]), f"{err[name][i]:+.0f}%"]
        rows.append([*row, f"{get['flat'][i] / get['hierarchical'][i]:.2f}×"])
    link_rows = [
        [fmt_size(n), fmt_ms(a), fmt_ms(2 * intra.alpha + n * intra.beta), fmt_ms(b),
         fmt_ms(2 * inter.alpha + n * inter.beta), fmt_ms(c)]
        for n, a, b, c in zip(ns, get["intra-2"], get["inter-2"], get["hier-scatter"], strict=True)
    ]  # fmt: skip
    agree = sum(
        (m_h < m_f) == (g_h < g_f)
        for m_h, m_f, g_h, g_f in zip(pred["hierarchical"], pred["flat"], get["hierarchical"], get["flat"], strict=True)
    )
    extra_rows = []
    for nodes, kk in ((n_nodes, k), (16, 8), (128, 8)):
        c = Cluster(nodes, kk, intra, inter)
        for n in (4 * KB, 64 * KB, MB, 16 * MB, 64 * MB, 256 * MB):
            f, h, hs = flat_time(c, n), hierarchical_time(c, n, "leader"), hierarchical_time(c, n, "scatter")
            extra_rows.append([f"{nodes} × {kk}", fmt_size(n), fmt_ms(f), fmt_ms(h), fmt_ms(hs), f"{f / h:.1f}×"])
    if emulated:
        net = (
            f"{n_nodes} network namespaces (one per node, {k} ranks each); inter-node link: `tc tbf rate {args.rate}` "
            f"on each node's egress + {args.delay_ms:g} ms one-way delay (userspace TUN forwarder, `netem` is not "
            "available here); intra-node: each namespace's loopback"
        )
    else:
        net = "**no emulation** (namespaces not permitted): every rank on 127.0.0.1, so 'inter-node' is loopback too"
    big = (4 * KB, 1 << 30)
    lines = [
        f"# Allreduce: flat vs hierarchical (gloo, {p} ranks as {n_nodes} nodes × {k})",
        "",
        f"`python benchmarks/allreduce.py --rate {args.rate} --delay-ms {args.delay_ms:g} --max-mb {args.max_mb}` "
        f"(as root) on {machine()}; {seconds:.0f} s in all.",
        f"Network: {net}.",
        "",
        "Each time is the slowest rank's mean over back-to-back calls (20 for small messages, 1 for the largest) "
        "after a barrier, median of three rounds, of the strategy objects the DDP hook runs: `FlatAllreduce` and "
        '`HierarchicalAllreduce(variant="leader")` (what `variant="auto"` picks on gloo); +fp16: pre-divided by P, '
        "cast, the flat allreduce / the inter-node stage in fp16. The model columns are predictions from the two "
        "link fits below, not fits of these series.",
        "",
        "## α-β fits",
        "",
        "From 2-rank allreduces (`2α + nβ`), least squares weighted by 1/t, so small messages set α and large ones β.",
        "",
        "| link | measured on | α (per step) | β (per byte) | bandwidth |",
        "|---|---|---|---|---|",
        f"| intra-node | local ranks 0–1 of every node at once | {intra.alpha * 1e6:,.0f} µs | "
        f"{intra.beta * 1e9:.3f} ns | {intra.bandwidth / 1e6:,.0f} MB/s |",
        f"| inter-node | the {n_nodes} node leaders | {inter.alpha * 1e6:,.0f} µs | {inter.beta * 1e9:.3f} ns | "
        f"{inter.bandwidth / 1e6:,.0f} MB/s |",
        "",
        f"Model for P = N·K = {p} (N = {n_nodes} nodes, K = {k} ranks per node; derivation in docs/train.md):",
        "",
        "- flat ring: `2(P−1)·α_e + 2(P−1)/P·n·β_e` (each of the 2(P−1) steps is paced by an inter-node link)",
        "- hierarchical (leader): `2⌈log2 K⌉·(α_i + n·β_i) + 2(N−1)·α_e + 2(N−1)/N·n·β_e` "
        "(tree reduce, ring among leaders, tree broadcast)",
        "- hierarchical (scatter): `2(K−1)·α_i + 2(K−1)/K·n·β_i + 2(N−1)·α_e + 2(N−1)/N·n·β_e`",
        "- +fp16: n/2 bytes on the compressed links (flat: all; hierarchical: inter-node); casts are not modelled",
        "",
        "## Measured vs model (ms)",
        "",
        markdown_table(header, rows),
        "",
        f"Largest model error: **flat {worst['flat']:.0f}%, hierarchical {worst['hierarchical']:.0f}%** (goal ≤ 25%); "
        f"flat+fp16 {worst['flat+fp16']:.0f}%, hierarchical+fp16 {worst['hierarchical+fp16']:.0f}% (casts and gloo's "
        f"element-wise fp16 sums are not in the model); hierarchical scatter {worst['hier-scatter']:.0f}%.",
        f"Model and measurement agree on the faster strategy at {agree} of {len(ns)} sizes.",
        "",
        f"- measured: {winners_measured(ns, get['hierarchical'], get['flat'])}",
        f"- model: {winners_model(cluster, ns[0], ns[-1])}",
        "",
        "The link measurements behind the fits, and the scatter variant (Horovod's reduce-scatter / allreduce / "
        "all-gather), which gloo's slow reduce-scatter makes slower than the leader variant here:",
        "",
        markdown_table(["size", "intra 2-rank ms", "fit", "inter 2-rank ms", "fit", "hier (scatter) ms"], link_rows),
        "",
        "## Extrapolation with the fitted links (model, ms)",
        "",
        markdown_table(
            ["nodes × ranks", "size", "flat", "hierarchical (leader)", "hierarchical (scatter)", "flat ÷ leader"],
            extra_rows,
        ),
        "",
        "Who wins, 4 KB … 1 GB:",
        "",
        f"- 16 × 8, leader: {winners_model(Cluster(16, 8, intra, inter), *big)}",
        f"- 16 × 8, scatter: {winners_model(Cluster(16, 8, intra, inter), *big, 'scatter')}",
        f"- 128 × 8, leader: {winners_model(Cluster(128, 8, intra, inter), *big)}",
        f"- 128 × 8, scatter: {winners_model(Cluster(128, 8, intra, inter), *big, 'scatter')}",
        "",
        "At 128 × 8 a flat ring pays 2(P−1) = 2046 inter-node steps, the hierarchical allreduce 2(N−1) = 254 plus "
        "2⌈log2 8⌉ = 6 (leader) or 2(K−1) = 14 (scatter) intra-node ones. For large messages the leader variant's "
        "trees move the whole message 2⌈log2 K⌉ times over the intra-node link, the scatter variant only 2(K−1)/K "
        "of it, so with K = 8 the choice between them for large buckets turns on β_i against β_e (the lines above; "
        '`variant="auto"` measures it at start-up).',
        "",
        "![allreduce times](allreduce.png)",
        "",
    ]
    return "\n".join(lines), {"ns": ns, "get": get, "pred": pred, "intra": intra, "inter": inter}


def plot(result: dict, path: Path, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns, get, pred = result["ns"], result["get"], result["pred"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    colors = {
        "flat": "tab:red",
        "hierarchical": "tab:blue",
        "flat+fp16": "tab:orange",
        "hierarchical+fp16": "tab:cyan",
    }
    for name, color in colors.items():
        ax.plot(ns, [t * 1e3 for t in get[name]], "o", color=color, label=f"{name} measured")
        ax.plot(ns, [t * 1e3 for t in pred[name]], "-", color=color, alpha=0.7, label=f"{name} model")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="message bytes",
        ylabel="ms per allreduce",
        title=f"gloo, {args.nodes} nodes × {args.ranks_per_node} ranks (emulated network)",
    )
    ax.legend(fontsize=7)
    grid = [4 * KB * 2**i for i in range(17)]
    for (nodes, k), style in (((16, 8), "--"), ((128, 8), "-")):
        c = Cluster(nodes, k, result["intra"], result["inter"])
        ax2.plot(grid, [flat_time(c, n) * 1e3 for n in grid], style, color="tab:red", label=f"flat {nodes}×{k}")
        ax2.plot(
            grid,
            [hierarchical_time(c, n) * 1e3 for n in grid],
            style,
            color="tab:blue",
            label=f"hierarchical {nodes}×{k}",
        )
    ax2.set(
        xscale="log",
        yscale="log",
        xlabel="message bytes",
        ylabel="ms (model)",
        title="extrapolated with the fitted α, β",
    )
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=2, help="emulated nodes (default 2)")
    p.add_argument("--ranks-per-node", type=int, default=2, help="ranks per node (default 2)")
    p.add_argument("--rate", default="1gbit", help="inter-node egress rate per node, tc syntax (default 1gbit)")
    p.add_argument("--delay-ms", type=float, default=1.0, help="inter-node one-way delay (default 1 ms)")
    p.add_argument("--min-kb", type=int, default=4, help="smallest message in KB (default 4)")
    p.add_argument("--max-mb", type=int, default=256, help="largest message in MB (default 256)")
    p.add_argument("--loopback", action="store_true", help="no emulation: every rank on 127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="rendezvous port (default: a free one)")
    p.add_argument("--out", default=str(RESULTS / "allreduce.md"), help="markdown result (PNG beside it)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    net: EmulatedNetwork | None = None
    if not args.loopback:
        net = EmulatedNetwork(args.nodes, args.rate, args.delay_ms / 1e3)
        try:
            net.up()
        except (OSError, FileNotFoundError) as exc:
            print(f"network namespaces not available ({exc}): falling back to loopback", file=sys.stderr)
            net.down()
            net = None
    tmp = Path(tempfile.mkdtemp(prefix="dataio-allreduce-"))
    start = time.perf_counter()
    try:
        args.port = args.port or free_port("127.0.0.1")
        data = launch(args, net, tmp / "results.json")
    finally:
        if net:
            net.down()
        shutil.rmtree(tmp, ignore_errors=True)
    text, result = report(data, args, net is not None, time.perf_counter() - start)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    plot(result, out.with_suffix(".png"), args)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
