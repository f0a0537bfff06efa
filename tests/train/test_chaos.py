"""Chaos: DDP training with 2 gloo ranks from SeaweedFS while the server is killed and restarted mid-epoch and the
proxy cuts 5% of the responses (before the headers, mid-body, at the last byte, or the request itself).

What must hold (issue 13, item 10): the run completes with the default retry policy; in every epoch every sample
is consumed exactly once across the two ranks, each rank consuming exactly its sampler's indices in order; and the
final weights are identical (``torch.equal``) to those of an undisturbed run with the same seed from the same store.

The ranks read through the public API only (``open_dataset(url, storage_options=…)``, ``DistributedShuffleSampler``,
``dataio.DataLoader``), so the test exercises whichever S3 client is the default. Both runs happen in one spawn of
the two ranks (undisturbed first, straight to the server; then the chaos run through the proxy): starting ranks
costs seconds. Each batch carries its samples' keys, which every rank records.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.multiprocessing as mp
from PIL import Image

import dataio
from tests.storage.conftest import CREDENTIALS, require_weed, upload_tree
from tests.storage.faultproxy import FaultProxy
from tests.storage.seaweed import SeaweedServer
from tests.train.ranks import start_ranks

SEED = 3
EPOCHS = 3
BATCH = 2  # per rank: 48 samples / 2 ranks / 2 = 12 steps per epoch
PAUSE_AT = (1, 2)  # (epoch, step) at which rank 0 waits for the server to be killed
CUT_RATE = 0.05
PROXY_SEED = 16  # its first 33 draws cut 5 requests, at every reset point
OUTAGE_S = 3.0  # the server stays down this long before it is started again
RUN_TIMEOUT_S = 300.0  # a hang fails the test
TAGS = ("undisturbed", "chaos")


def _pixels(jpeg: bytes) -> torch.Tensor:
    """The image as a 3×8×8 float tensor (deterministic: PIL's draft decode, then a bilinear resize)."""
    with Image.open(io.BytesIO(jpeg)) as im:
        im.draft("RGB", (32, 32))
        small = im.convert("RGB").resize((8, 8), Image.BILINEAR)
    return torch.from_numpy(np.asarray(small, dtype=np.float32)).permute(2, 0, 1) / 255.0


def _collate(samples: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    images = torch.stack([_pixels(bytes(s["image"])) for s in samples])
    return images, torch.tensor([s["label"] for s in samples], dtype=torch.int64), [s["key"] for s in samples]


def _model(num_classes: int) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(32, num_classes),
    )


def _train_once(rank: int, url: str, options: dict[str, Any], out: Path, tag: str, pause: Any = None) -> None:
    """One training run; writes this rank's per-epoch indices and consumed keys, and its final weights."""
    from torch.nn.parallel import DistributedDataParallel

    torch.manual_seed(SEED)
    ds = dataio.open_dataset(url, storage_options=options, threads=4)  # the default RetryPolicy
    sampler = dataio.DistributedShuffleSampler(ds, "block", seed=SEED, drop_last=True)
    loader = dataio.DataLoader(
        ds, batch_size=BATCH, sampler=sampler, num_workers=2, worker_mode="thread", collate_fn=_collate, drop_last=True
    )
    model = DistributedDataParallel(_model(len(ds.classes or [])))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    record: dict[str, list[Any]] = {"indices": [], "keys": []}
    for epoch in range(EPOCHS):
        loader.set_epoch(epoch)
        record["indices"].append(sampler.epoch_indices().tolist())
        keys: list[str] = []
        for step, (images, labels, batch_keys) in enumerate(loader):
            if pause is not None and (epoch, step) == PAUSE_AT:
                pause(rank)
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            keys += batch_keys
        record["keys"].append(keys)
    record["retries"] = getattr(ds.store, "retries", None)  # type: ignore[assignment]
    ds.close()
    (out / f"{tag}-rank{rank}.json").write_text(json.dumps(record))
    torch.save(model.module.state_dict(), out / f"{tag}-rank{rank}.pt")


def _rank(rank: int, world: int, url: str, direct: dict, proxied: dict, out: str, mid: Any, down: Any) -> None:
    del world
    torch.set_num_threads(1)
    _train_once(rank, url, direct, Path(out), "undisturbed")

    def pause(r: int) -> None:  # mid-epoch on rank 0: the main process kills the server, then we read on
        if r == 0:
            mid.set()
            if not down.wait(RUN_TIMEOUT_S):
                raise RuntimeError("the server was not killed")

    _train_once(rank, url, proxied, Path(out), "chaos", pause)


def _join(ctx: mp.ProcessContext, deadline: float) -> None:
    while not ctx.join(timeout=1.0):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            raise AssertionError(f"the ranks did not finish within {RUN_TIMEOUT_S:.0f} s")


def test_training_survives_a_server_crash_and_cut_responses(tmp_path: Path, packed: Path) -> None:
    require_weed()
    server = SeaweedServer(tmp_path / "weed", credentials=CREDENTIALS).start()
    proxy = FaultProxy("127.0.0.1", server.port, reset_rate=CUT_RATE, reset_at="any", seed=PROXY_SEED).start()
    out = tmp_path / "out"
    out.mkdir()
    try:
        server.create_bucket("chaos")
        url = upload_tree(server, packed, "chaos", "ds")
        spawn = mp.get_context("spawn")
        mid, down = spawn.Event(), spawn.Event()
        direct, proxied = server.s3_storage_options(), server.s3_storage_options(endpoint=proxy.endpoint)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        ctx = start_ranks(_rank, 2, url, direct, proxied, str(out), mid, down)
        while not mid.wait(1.0):  # the chaos run reached epoch 1, step 2 on rank 0
            if ctx.join(timeout=0) or time.monotonic() > deadline:
                raise AssertionError("the ranks ended (or hung) before the chaos run got to its pause")
        server.kill()  # SIGKILL: a crash, in the middle of an epoch
        down.set()
        time.sleep(OUTAGE_S)  # the outage: every request meanwhile is refused (the proxy answers 502)
        server.start()  # same ports and data directory
        _join(ctx, deadline)
    finally:
        proxy.stop()
        server.stop()

    local = dataio.open_dataset(packed)
    all_keys = [local[i]["key"] for i in range(len(local))]
    runs = {tag: [json.loads((out / f"{tag}-rank{r}.json").read_text()) for r in range(2)] for tag in TAGS}
    for tag, ranks in runs.items():
        for epoch in range(EPOCHS):
            indices = [r["indices"][epoch] for r in ranks]
            assert sorted(indices[0] + indices[1]) == list(range(len(all_keys))), (tag, epoch, indices)
            for r, rec in enumerate(ranks):
                assert rec["keys"][epoch] == [all_keys[i] for i in indices[r]], (tag, epoch, r)
    assert [r["indices"] for r in runs["chaos"]] == [r["indices"] for r in runs["undisturbed"]]
    assert proxy.counters.resets >= 3, proxy.counters  # the cuts happened …
    assert proxy.counters.upstream_errors >= 1, proxy.counters  # … and so did the outage
    retries = [r["retries"] for r in runs["chaos"] if r["retries"] is not None]  # None: a client without a count
    assert not retries or sum(retries) > 0, retries
    weights = {tag: [torch.load(out / f"{tag}-rank{r}.pt") for r in range(2)] for tag in runs}
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        initial = _model(len(local.classes or []))
    for name, value in weights["undisturbed"][0].items():
        assert not torch.equal(value, initial.state_dict()[name]) or value.numel() == 0, f"{name} never trained"
        for tag in runs:
            for r in range(2):
                assert torch.equal(weights[tag][r][name], value), f"{tag} rank {r}: {name} differs"
