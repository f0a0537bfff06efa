"""``pack()``: list the source, plan the shards, write them in parallel, then commit index and manifest.

The manifest is written last, atomically: until it exists the output is an unfinished pack, and a rerun
after a crash or Ctrl-C reuses every shard whose progress record and checksum still match.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import io
import json
import logging
import multiprocessing as mp
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataio.errors import PackError
from dataio.format.manifest import MANIFEST_NAME, Manifest, ShardEntry
from dataio.format.schema import IMAGE_SCHEMA
from dataio.pack.labels import Item, label_by_folder, label_from_list, label_val
from dataio.pack.ledger import INDEX_NAME, INDEX_RECORD, read_ledger
from dataio.pack.output import Writer, check_folders, check_no_foreign_files, finish, tidy, writer_for
from dataio.pack.plan import PackOptions, ShardJob, order_items, plan_shards
from dataio.pack.sources import printable, refuse_special, scan_folder, scan_tar, special_reason, utf8_names
from dataio.pack.worker import ShardResult, close_writers, init_worker, run_job
from dataio.storage import RetryPolicy, Store, is_url, open_store
from dataio.storage.staging import sweep_stale

__all__ = ["PackReport", "collect_items", "pack"]

log = logging.getLogger("dataio.pack")


@dataclass(frozen=True)
class PackReport:
    """Summary of a finished pack."""

    output: str
    num_samples: int
    num_shards: int
    bytes: int
    source_bytes: int
    seconds: float
    written_shards: int
    reused_shards: int
    skipped: tuple[tuple[str, str], ...]
    classes: tuple[str, ...] | None


def collect_items(
    source: str | os.PathLike[str],
    *,
    labels: str | os.PathLike[str] | None = None,
    synsets: str | os.PathLike[str] | None = None,
    classes: Sequence[str] | None = None,
    follow_symlinks: bool = False,
    on_error: str = "fail",
) -> tuple[list[Item], list[str] | None, str]:
    """Lists and labels the samples of ``source``; returns ``(items, classes, source kind)``.

    Symlinks inside the source are refused unless ``follow_symlinks`` (a followed symlink loop is logged and not
    followed); FIFOs, devices and sockets always (:class:`PackError` naming each). ``source`` itself may be a
    symlink (it is what the user named). Files whose names are not UTF-8 are refused (:class:`PackError` naming
    each), or with ``on_error="skip"`` left out with a logged warning naming each.
    """
    items, cls, kind, _ = _collect(source, labels, synsets, classes, follow_symlinks, on_error)
    return items, cls, kind


def _collect(
    source: str | os.PathLike[str],
    labels: str | os.PathLike[str] | None,
    synsets: str | os.PathLike[str] | None,
    classes: Sequence[str] | None,
    follow_symlinks: bool,
    on_error: str,
) -> tuple[list[Item], list[str] | None, str, list[tuple[str, str]]]:
    """:func:`collect_items`, plus ``(printable path, reason)`` of the files left out for their names."""
    text = os.fspath(source)
    if is_url(text):
        raise PackError(f"{text}: pack reads sources from local paths (output may be a URL)")
    path = Path(text)
    if not path.exists():
        raise PackError(f"{path}: no such file or directory")
    if not path.is_dir():
        refuse_special([(str(path), r) for r in [special_reason(path, True)] if r is not None])
    if path.suffix.lower() in (".csv", ".parquet"):
        items, cls = label_from_list(path, classes=classes)
        refuse_special([(it.path, r) for it in items if (r := special_reason(it.path, follow_symlinks)) is not None])
        return items, cls, "list", []
    loops: list[str] = []
    if path.is_dir():
        files, kind = scan_folder(path, follow_symlinks=follow_symlinks, loops=loops), "folder"
    elif path.suffix.lower() == ".tar":
        files, kind = scan_tar(path), "tar"
    else:
        raise PackError(f"{path}: SOURCE must be a folder, a .tar archive, or a .csv/.parquet list")
    files, bad_names = utf8_names(files)
    _refuse_or_skip_names(bad_names, on_error)
    if labels is not None:
        items, cls = label_val(files, labels, synsets_file=synsets, classes=classes)
        return items, cls, f"{kind}+labels", bad_names
    if kind == "folder":
        _check_no_empty_class(path, files, follow_symlinks, loops)
    items, cls = label_by_folder(files, classes=classes)
    return items, cls, kind, bad_names


def _refuse_or_skip_names(bad: list[tuple[str, str]], on_error: str) -> None:
    """Files with non-UTF-8 names: a :class:`PackError` naming them (``on_error="fail"``), else one warning each."""
    if bad and on_error == "fail":
        shown = "; ".join(p for p, _ in bad[:5]) + (f" (and {len(bad) - 5} more)" if len(bad) > 5 else "")
        raise PackError(
            f"{len(bad)} source file name(s) not valid UTF-8 (sample keys are UTF-8 text): {shown}; rename them "
            "(e.g. with convmv), or pass --on-error skip to leave them out",
            bad,
        )
    for p, why in bad:
        log.warning("skipped %s: %s", p, why)


def _check_no_empty_class(root: Path, files: list[Any], follow_symlinks: bool, loops: list[str]) -> None:
    """An ImageFolder class folder without images is an error, as in torchvision (its class would silently get
    no label index here, shifting every later class's index against a torchvision run over the same folder).
    A symlink loop and a folder whose name is not UTF-8 (its files were skipped) are no class folders."""
    with_images = {f.relpath.split("/", 1)[0] for f in files if "/" in f.relpath}
    folders = [
        e.name
        for e in os.scandir(root)
        if e.is_dir(follow_symlinks=follow_symlinks) and e.path not in loops and e.name == printable(e.name)
    ]
    empty = sorted(name for name in folders if name not in with_images)
    if empty:
        raise PackError(
            f"{root}: no image files in the class folder(s) {empty[:10]}{' …' if len(empty) > 10 else ''} "
            f"(torchvision's ImageFolder refuses them too): add images, or move the folders out of {root}"
        )


def _check_unique(items: list[Item]) -> None:
    seen: set[str] = set()
    dupes = [it.key for it in items if it.key in seen or seen.add(it.key)]  # type: ignore[func-returns-value]
    if dupes:
        raise PackError(f"{len(dupes)} duplicate sample keys, e.g. {dupes[:5]}")


def _size_ratio(items: list[Item], options: PackOptions) -> float:
    """Estimated output/input bytes of the re-encode, from a deterministic sample of the inputs."""
    from dataio.pack.images import reencode

    sample = items[:: max(1, len(items) // 32)][:32]
    src = out = 0
    for it in sample:
        try:
            with open(it.path, "rb") as f:
                f.seek(it.offset)
                data = f.read(it.size)
            out += len(reencode(data, options.max_size, options.quality))
            src += len(data)
        except Exception:  # bad images are reported by the workers
            continue
    return out / src if src else 1.0


def _run(
    jobs: list[ShardJob],
    output: str,
    storage_options: dict[str, Any] | None,
    options: PackOptions,
    store: Store,
    total: int,
    progress: bool,
    retry: RetryPolicy | None,
) -> list[ShardResult]:
    from tqdm import tqdm

    ctx = mp.get_context("spawn")
    counters = (ctx.Value("q", 0), ctx.Value("q", 0))
    workers = min(options.workers, len(jobs)) if store.shared_between_processes else 1
    bar = tqdm(total=total, unit="img", disable=not progress, smoothing=0.1, dynamic_ncols=True)
    t0 = time.perf_counter()

    def tick() -> None:
        bar.n = counters[0].value
        bar.set_postfix_str(f"{counters[1].value / 1e6 / max(time.perf_counter() - t0, 1e-9):.1f} MB/s", refresh=True)

    try:
        if workers <= 1:
            init_worker(counters)
            results = []
            try:
                for job in jobs:
                    results.append(run_job(job, output, storage_options, options, retry))
                    tick()
            finally:
                close_writers()
            init_worker(None)
            return results
        init = (counters, os.getpid())  # a worker ends when this process dies (no orphans after kill -9)
        with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=init_worker, initargs=init) as pool:
            futures = [pool.submit(run_job, job, output, storage_options, options, retry) for job in jobs]
            try:
                while not all(f.done() for f in futures):
                    cf.wait(futures, timeout=0.25, return_when=cf.FIRST_EXCEPTION)
                    tick()
                    if any(f.done() and f.exception() for f in futures):
                        break
                return [f.result() for f in futures]
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    finally:
        tick()
        bar.close()


def _write_index(writer: Writer, jobs: list[ShardJob], results: list[ShardResult]) -> str:
    """Writes the Parquet sample index (after its record, the proof that pack wrote it); returns its sha256 (hex)
    for the manifest."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols: dict[str, list[Any]] = {k: [] for k in ("key", "label", "shard", "position", "offset", "length")}
    for job, res in zip(jobs, results, strict=True):
        for pos, (i, off, length) in enumerate(zip(res.positions, res.offsets, res.lengths, strict=True)):
            cols["key"].append(job.items[i].key)
            cols["label"].append(job.items[i].label)
            cols["shard"].append(job.shard_id)
            cols["position"].append(pos)
            cols["offset"].append(off)
            cols["length"].append(length)
    types = {
        "key": pa.string(),
        "label": pa.int64(),
        "shard": pa.int32(),
        "position": pa.int64(),
        "offset": pa.int64(),
        "length": pa.int64(),
    }
    table = pa.table({k: pa.array(v, type=types[k]) for k, v in cols.items()})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    data = buf.getvalue()
    sha256 = hashlib.sha256(data).hexdigest()
    writer.write_bytes(INDEX_RECORD, json.dumps({"sha256": sha256, "size": len(data)}).encode())
    writer.write_bytes(INDEX_NAME, data)
    return sha256


def _check_output(output: str | os.PathLike[str]) -> None:
    """A local output must be a directory (or not exist yet): say so before any work, not with a traceback."""
    out = os.fspath(output)
    if "://" in out:
        return
    for parent in (Path(out), *Path(out).parents):
        if parent.exists() and not parent.is_dir():
            raise PackError(f"output {out}: {parent} is a file, not a directory; give a directory path (it is created)")
        if parent.exists():
            return


def pack(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    options: PackOptions | None = None,
    *,
    labels: str | os.PathLike[str] | None = None,
    synsets: str | os.PathLike[str] | None = None,
    classes: Sequence[str] | None = None,
    storage_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    retry: RetryPolicy | None = None,
) -> PackReport:
    """Packs ``source`` into a dataset at ``output`` (a local path or any fsspec URL).

    Args:
        source: Image folder, ``.tar`` archive (flat or of per-class tars), or ``.csv``/``.parquet`` list.
        output: Dataset directory or URL prefix.
        options: Shard size, order, re-encode, error policy and worker count.
        labels: Labels file of a flat validation set (devkit ground truth or CSV ``ImageId,label-or-wnid``).
        synsets: ILSVRC id → wnid mapping for the devkit ground truth (``meta.mat`` or text).
        classes: Class names fixing the label indices (e.g. the train dataset's, for a validation set).
        storage_options: fsspec options for ``output``.
        overwrite: Replace an existing dataset packed with different input or options, and pack into an output
            that holds files pack did not create (refused otherwise, naming a few; pack never deletes or replaces
            them, and logs them). Pack deletes or replaces only files its own records name with their current
            size (:mod:`dataio.pack.output`); ``shards/`` or ``.dataio-pack/`` being a symlink is always refused.
        progress: Show a progress bar (samples/s and MB/s).
        retry: How uploads to a URL retry transient failures (default :class:`~dataio.storage.RetryPolicy`:
            about two minutes per upload, enough for a server restart).

    Raises:
        PackError: if the source is unusable, the output holds foreign files (without ``overwrite``) or one at a
            name the plan must write, or (``on_error="fail"``) naming every unreadable image or non-UTF-8 file name.
    """
    options = options or PackOptions()
    t0 = time.perf_counter()
    _check_output(output)
    out = os.fspath(output)
    if is_url(out):
        sweep_stale()  # upload files staged by killed packs
    store = open_store(out, storage_options, retry=retry)
    check_folders(store)
    ledger = read_ledger(store)
    check_no_foreign_files(store, ledger, overwrite)
    writer = writer_for(store)
    items, cls, kind, name_skips = _collect(source, labels, synsets, classes, options.follow_symlinks, options.on_error)
    _check_unique(items)
    items = order_items(items, options)
    jobs = plan_shards(items, options, _size_ratio(items, options) if options.reencodes else 1.0)
    plan_hash = hashlib.sha256("".join(j.plan_hash for j in jobs).encode() + repr(cls).encode()).hexdigest()
    old = ledger.manifest
    if old is not None and old.extra.get("plan_hash") != plan_hash:
        if not overwrite:
            raise PackError(f"{store.url(MANIFEST_NAME)} holds a different dataset; pass overwrite to replace it")
        writer.delete(MANIFEST_NAME)
    tidy(store, writer, ledger, jobs, keep_index=old is not None and old.extra.get("plan_hash") == plan_hash)
    results = _run(jobs, out, storage_options, options, store, len(items), progress, retry)
    bad = [b for r in results for b in r.bad]
    if bad:
        lines = "\n".join(f"  {p}: {why}" for p, why in bad)
        raise PackError(f"{len(bad)} unreadable images (rerun with --on-error skip to leave them out):\n{lines}", bad)
    index_sha256 = _write_index(writer, jobs, results)
    skipped = (*name_skips, *((p, why) for r in results for p, why in r.skipped))
    manifest = Manifest(
        schema=IMAGE_SCHEMA,
        shards=tuple(
            ShardEntry(j.path, r.info.num_samples, r.info.size, r.info.sha256, r.info.index_offset, r.info.index_crc32)
            for j, r in zip(jobs, results, strict=True)
            if r.info
        ),
        classes=tuple(cls) if cls is not None else None,
        index_path=INDEX_NAME,
        index_sha256=index_sha256,
        skipped=tuple({"path": p, "reason": why} for p, why in skipped),
        extra={"plan_hash": plan_hash, "source_kind": kind, "pack_options": options.byte_options()},
    )
    writer.write_bytes(MANIFEST_NAME, manifest.dumps())
    finish(store, writer)
    return PackReport(
        output=out,
        num_samples=manifest.num_samples,
        num_shards=len(manifest.shards),
        bytes=manifest.total_bytes,
        source_bytes=sum(max(it.size, 0) for it in items),
        seconds=time.perf_counter() - t0,
        written_shards=sum(r.status == "written" for r in results),
        reused_shards=sum(r.status == "reused" for r in results),
        skipped=skipped,
        classes=manifest.classes,
    )
