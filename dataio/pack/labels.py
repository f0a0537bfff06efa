"""Turning source files into labelled samples.

- Folder layout (ImageFolder / ImageNet train): the class is the top-level folder, classes are the sorted
  folder names and the label is the class's index in that list — exactly torchvision's ImageFolder.
- Validation layout: a flat set of images plus a labels file (the devkit's ground truth with 1-based
  ILSVRC ids and a synset mapping, or a CSV ``ImageId,label-or-wnid``).
- Lists: a CSV or Parquet table of ``path,label[,key]``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dataio.errors import PackError
from dataio.pack.sources import RawFile

__all__ = ["Item", "label_by_folder", "label_from_list", "label_val", "read_synsets"]


@dataclass(frozen=True)
class Item:
    """One sample to pack: ``key`` and ``label`` plus where its bytes are."""

    key: str
    label: int
    path: str
    offset: int
    size: int


def _folder_sort_key(item: Item) -> tuple[int, str, str]:
    # torchvision walks each class folder with sorted(os.walk(...)) and sorted file names.
    head, _, name = item.key.rpartition("/")
    return item.label, head, name


def label_by_folder(files: Sequence[RawFile], classes: Sequence[str] | None = None) -> tuple[list[Item], list[str]]:
    """Labels files by their top-level folder; returns items in torchvision's ImageFolder order and classes.

    ``classes`` (e.g. a train dataset's) fixes the index of each folder name; by default the sorted names.
    """
    nested = [f for f in files if "/" in f.relpath]
    if not nested:
        raise PackError("no class folders found; a flat set of images needs --labels (validation layout)")
    found = sorted({f.relpath.split("/", 1)[0] for f in nested})
    classes = list(classes) if classes is not None else found
    index = {c: i for i, c in enumerate(classes)}
    unknown = [c for c in found if c not in index]
    if unknown:
        raise PackError(f"class folders {unknown[:5]} are not among the {len(classes)} given classes")
    items = [Item(f.relpath, index[f.relpath.split("/", 1)[0]], f.path, f.offset, f.size) for f in nested]
    return sorted(items, key=_folder_sort_key), list(classes)


def read_synsets(path: str | os.PathLike[str]) -> list[str]:
    """ILSVRC id → wnid mapping; element ``i`` is the wnid of id ``i + 1``.

    Accepts the devkit's ``meta.mat`` (needs scipy) or a text file whose line ``i`` starts with the wnid of
    id ``i`` (e.g. ``n01440764 tench, Tinca tinca``).
    """
    p = Path(path)
    if p.suffix == ".mat":
        try:
            from scipy.io import loadmat
        except ImportError as exc:
            raise ImportError("reading the devkit's meta.mat needs scipy: pip install scipy") from exc
        synsets = loadmat(p, squeeze_me=True)["synsets"]
        pairs = sorted((int(s[0]), str(s[1])) for s in synsets if int(s[4]) == 0)  # num_children == 0: leaves
        return [w for _, w in pairs]
    return [line.split()[0] for line in p.read_text().splitlines() if line.strip()]


def _read_labels_file(path: Path, names: list[str], synsets: list[str] | None) -> dict[str, str | int]:
    """Maps image stem → wnid (str) or class index (int)."""
    text = path.read_text()
    first = text.lstrip().split("\n", 1)[0]
    if "," not in first:  # devkit ground truth: one 1-based ILSVRC id per line, images in sorted order
        ids = [int(x) for x in text.split()]
        if len(ids) != len(names):
            raise PackError(f"{path}: {len(ids)} labels for {len(names)} images")
        if synsets is None:
            return {n: i - 1 for n, i in zip(names, ids, strict=True)}
        bad = [i for i in ids if not 1 <= i <= len(synsets)]
        if bad:
            raise PackError(f"{path}: ILSVRC ids {sorted(set(bad))[:5]} are not in the synset mapping")
        return {n: synsets[i - 1] for n, i in zip(names, ids, strict=True)}
    out: dict[str, str | int] = {}
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        if len(header) < 2:
            raise PackError(f"{path}: expected a CSV with columns ImageId,label")
        for row in reader:
            if row:
                token = row[1].split()[0] if row[1].split() else ""
                out[Path(row[0]).stem] = int(token) if token.lstrip("-").isdigit() else token
    return out


def label_val(
    files: Sequence[RawFile],
    labels_file: str | os.PathLike[str],
    *,
    synsets_file: str | os.PathLike[str] | None = None,
    classes: Sequence[str] | None = None,
) -> tuple[list[Item], list[str] | None]:
    """Labels a flat validation set; ``classes`` (e.g. from the train manifest) fixes the wnid → index map."""
    flat = sorted(files, key=lambda f: f.relpath)
    names = [Path(f.relpath).stem for f in flat]
    synsets = read_synsets(synsets_file) if synsets_file else None
    mapping = _read_labels_file(Path(labels_file), names, synsets)
    missing = [n for n in names if n not in mapping]
    if missing:
        raise PackError(f"{labels_file}: no label for {len(missing)} images, e.g. {missing[:5]}")
    wnids = {v for v in mapping.values() if isinstance(v, str)}
    if wnids and classes is None:
        classes = sorted(set(synsets) if synsets else wnids)
    index = {c: i for i, c in enumerate(classes or [])}
    unknown = sorted(w for w in wnids if w not in index)
    if unknown:
        raise PackError(f"{labels_file}: labels {unknown[:5]} are not among the {len(index)} classes")
    items = []
    for f, n in zip(flat, names, strict=True):
        value = mapping[n]
        items.append(Item(f.relpath, index[value] if isinstance(value, str) else value, f.path, f.offset, f.size))
    return items, list(classes) if classes is not None else None


def label_from_list(
    list_path: str | os.PathLike[str], *, classes: Sequence[str] | None = None
) -> tuple[list[Item], list[str] | None]:
    """Reads a CSV or Parquet table with columns ``path,label[,key]`` (paths relative to the table's folder).

    Integer labels are used as they are; string labels become indices into ``classes`` (default: the sorted
    distinct labels).
    """
    lp = Path(list_path)
    if lp.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(lp, use_threads=False, pre_buffer=False).to_pylist()  # see ShardDataset.index_table
    else:
        with open(lp, newline="") as f:
            rows = list(csv.DictReader(f))
    if rows and not {"path", "label"} <= set(rows[0]):
        raise PackError(f"{lp}: needs columns path,label[,key]; found {sorted(rows[0])}")
    labels = [r["label"] for r in rows]
    as_int = all(isinstance(v, int) or str(v).lstrip("-").isdigit() for v in labels)
    if not as_int and classes is None:
        classes = sorted({str(v) for v in labels})
    index = {c: i for i, c in enumerate(classes or [])}
    items, bad = [], []
    for r in rows:
        path = Path(r["path"]) if Path(r["path"]).is_absolute() else lp.parent / r["path"]
        label = int(r["label"]) if as_int else index.get(str(r["label"]), -1)
        if label < 0 and not as_int:
            bad.append((str(path), f"label {r['label']!r} is not a known class"))
            continue
        try:
            size = os.stat(path).st_size
        except OSError:
            size = -1  # unknown: the packer reports (or skips) it with the read error
        items.append(Item(str(r.get("key") or r["path"]), label, str(path), 0, size))
    if bad:
        raise PackError(f"{lp}: {len(bad)} unusable rows", bad)
    return sorted(items, key=lambda i: i.key), list(classes) if classes is not None else None
