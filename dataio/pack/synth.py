"""Synthetic ImageNet-like datasets made from the natural photos bundled with scikit-image (or scikit-learn).

A class is one region of one photo with its own colour treatment; its images vary by random crop, scale, flip
and brightness/contrast/saturation jitter. Nothing is downloaded. Output bytes depend on ``(seed, images,
classes, quality)`` only, never on ``workers``: each image has its own RNG seeded by ``(seed, split, index)``.
"""

from __future__ import annotations

import colorsys
import hashlib
import importlib.util
import io
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageOps

try:  # about 1.5x faster than PIL's encoder; PIL is the fallback
    import simplejpeg
except ImportError:  # pragma: no cover - depends on the environment
    simplejpeg = None

__all__ = ["SynthReport", "bundled_photos", "synth_imagefolder", "synth_val", "wnids"]

# Only photos shipped inside the wheels (skimage's pooch-fetched data sets are never used).
_SKIMAGE = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg", "ihc.png",
            "hubble_deep_field.jpg", "retina.jpg", "camera.png", "moon.png", "coins.png", "grass.png",
            "gravel.png", "brick.png")  # fmt: skip
_SKLEARN = ("china.jpg", "flower.jpg")
_SIZES = ((500, 375), (375, 500), (500, 333), (500, 400), (333, 500), (500, 500), (400, 300))
_SIZE_P = (0.62, 0.14, 0.10, 0.06, 0.04, 0.02, 0.02)
_BASE_LONG = 720  # long side of a class's cached source region
_TRAIN, _VAL, _WNID, _SYNSETS = 0, 1, 2, 3  # RNG stream tags
PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class SynthReport:
    """What a synth run wrote: root folder, JPEG count, sorted class names, total JPEG bytes, wall time."""

    out: Path
    images: int
    classes: list[str]
    total_bytes: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        """Throughput of the run."""
        return self.images / self.seconds if self.seconds > 0 else float("inf")


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)  # locates a top-level package without importing it
    locations = spec.submodule_search_locations if spec else None
    return Path(next(iter(locations))) if locations else None


@cache
def bundled_photos() -> tuple[Path, ...]:
    """Return the natural sample photos bundled with scikit-image (else scikit-learn), in a fixed order.

    Raises:
        FileNotFoundError: If neither package is installed with any of the expected photos.
    """
    for pkg, sub, names in (("skimage", "data", _SKIMAGE), ("sklearn", "datasets/images", _SKLEARN)):
        root = _package_dir(pkg)
        found = tuple(root / sub / n for n in names if root is not None and (root / sub / n).is_file())
        if found:
            return found
    raise FileNotFoundError(
        "dataio synth needs the sample photos bundled with scikit-image (skimage/data/*.png) or "
        "scikit-learn (sklearn/datasets/images/*.jpg); install one: pip install scikit-image"
    )


def wnids(classes: int, seed: int = 0) -> list[str]:
    """Return ``classes`` distinct, sorted, wnid-like names (``n`` + 8 digits) derived from ``seed``."""
    if classes < 1 or seed < 0:
        raise ValueError(f"need classes >= 1 and seed >= 0, got classes={classes}, seed={seed}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, _WNID]))
    ids = rng.choice(14_000_000, size=classes, replace=False) + 1_000_000
    return [f"n{int(i):08d}" for i in np.sort(ids)]


@cache
def _photo(i: int) -> Image.Image:
    with Image.open(bundled_photos()[i]) as im:
        grey = im.mode in ("L", "I", "I;16", "LA")
        im = ImageOps.autocontrast(im.convert("L"), cutoff=0.5) if grey else im.convert("RGB")
    im.thumbnail((1024, 1024), Image.Resampling.BILINEAR)
    return im


@cache
def _grain() -> Image.Image:
    rng = np.random.default_rng(20120)  # fixed: the same sensor-like grain texture in every process
    noise = rng.normal(128.0, 4.5, (_BASE_LONG, _BASE_LONG, 3))
    return Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8))


def _lut(curves: list[np.ndarray]) -> list[int]:
    return np.clip(np.concatenate(curves), 0, 255).round().astype(int).tolist()


@cache
def _detail(i: int) -> np.ndarray:
    """Gradient magnitude of a 1/8-size grey copy of photo ``i``, to pick textured class regions."""
    g = np.asarray(_photo(i).convert("L").reduce(8), dtype=np.float32)
    return np.abs(np.diff(g, axis=0))[:, :-1] + np.abs(np.diff(g, axis=1))[:-1, :]


def _hue(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


@lru_cache(maxsize=48)
def _class_base(name: str, index: int) -> Image.Image:
    """Class ``index`` (sorted position of ``name``): a textured region of one photo with a class colour cast.

    Casts follow the golden-ratio hue sequence so neighbouring classes differ; grey photos become duotones.
    Classes beyond the number of photos reuse one with a smaller region, a rotation/flip and channel swap.
    """
    n_photos = len(bundled_photos())
    photo, detail, repeat = _photo(index % n_photos), _detail(index % n_photos), index >= n_photos
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little"))
    w, h = photo.size
    frac = rng.uniform(0.3, 0.6) if repeat else rng.uniform(0.6, 0.9)
    cw, ch = int(w * frac), int(h * frac)
    xs, ys = rng.integers(0, w - cw + 1, 8), rng.integers(0, h - ch + 1, 8)  # keep the most textured
    texture = [detail[y // 8 : (y + ch) // 8, x // 8 : (x + cw) // 8].mean() for x, y in np.c_[xs, ys]]
    x0, y0 = (int(v) for v in np.c_[xs, ys][np.argmax(texture)])
    size = (round(cw * _BASE_LONG / max(cw, ch)), round(ch * _BASE_LONG / max(cw, ch)))
    base = photo.resize(size, Image.Resampling.BICUBIC, box=(x0, y0, x0 + cw, y0 + ch))
    op = int(rng.integers(0, 8)) if repeat else 0
    if op:
        base = base.transpose(Image.Transpose(op - 1))
    ramp, hue = np.linspace(0.0, 1.0, 256), index * 0.618034 + rng.uniform(0, 0.1)
    if base.mode == "L":
        lo, hi = _hue(hue, 0.8, 0.3) * 255, _hue(hue + rng.uniform(-0.1, 0.1), 0.4, 1.0) * 255
        g = rng.uniform(0.7, 1.4)
        base = base.convert("RGB").point(_lut([lo[c] + (hi[c] - lo[c]) * ramp**g for c in range(3)]))
    else:
        base = base.point(_lut([255.0 * ramp**g for g in rng.uniform(0.8, 1.25, 3)]))
        cast = _hue(hue, rng.uniform(0.45, 0.65), 1.0)
        m = np.zeros((3, 4))
        m[np.arange(3), rng.permutation(3) if repeat else np.arange(3)] = cast / cast.mean() * 0.95
        base = base.convert("RGB", tuple(m.ravel().tolist()))
    return ImageChops.add(base, _grain().crop((0, 0, *base.size)), 1.0, -128)


def _render(name: str, index: int, rng: np.random.Generator, quality: int) -> tuple[bytes, int, int]:
    """One JPEG instance of class ``index``; returns ``(jpeg bytes, width, height)``."""
    base = _class_base(name, index)
    w, h = _SIZES[int(rng.choice(len(_SIZES), p=_SIZE_P))]
    bw, bh = base.size
    ch = min(bh, min(bw, np.sqrt(rng.uniform(0.3, 1.0) * bw * bh * w / h)) * h / w)
    cw = ch * w / h
    x0, y0 = rng.uniform(0, bw - cw), rng.uniform(0, bh - ch)
    im = base.resize((w, h), Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    sat, con, bri = rng.uniform(0.75, 1.25), rng.uniform(0.85, 1.15), rng.uniform(0.85, 1.15)
    lin = sat * np.eye(3) + (1 - sat) * np.array([0.299, 0.587, 0.114])  # saturation around luma
    lin = bri * con * rng.uniform(0.96, 1.04, 3)[:, None] * lin  # contrast, brightness, white balance
    m = np.hstack([lin, np.full((3, 1), bri * (1 - con) * 128.0)])
    im = im.convert("RGB", tuple(m.ravel().tolist()))
    q = int(np.clip(quality + int(rng.integers(-2, 3)), 1, 100))
    if simplejpeg is not None:
        return simplejpeg.encode_jpeg(np.asarray(im), q, "RGB", "420", False), w, h
    buf = io.BytesIO()  # pragma: no cover - depends on the environment
    im.save(buf, "JPEG", quality=q, subsampling=2)
    return buf.getvalue(), w, h


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _task(task: tuple[str, int, str, int, int, int, int]) -> tuple[int, int, int]:
    """Worker entry point: ``(path, split, class name, class index, seed, image index, quality)``."""
    path, split, name, cls, seed, index, quality = task
    rng = np.random.default_rng(np.random.SeedSequence([seed, split, index]))
    data, w, h = _render(name, cls, rng, quality)
    _write_atomic(Path(path), data)
    return len(data), w, h


def _run(tasks: list[tuple], workers: int, progress: bool) -> list[tuple[int, int, int]]:
    bundled_photos()  # fail early, in the parent, with the clear error
    results: list[tuple[int, int, int]] = []
    step = max(1, len(tasks) // 100)
    # spawn: safe even when the caller has threads (torch); tasks are contiguous per class for the caches
    pool = mp.get_context("spawn").Pool(workers) if workers > 1 and len(tasks) > 1 else None
    try:
        chunk = max(1, min(64, len(tasks) // (4 * workers)))
        for r in pool.imap(_task, tasks, chunksize=chunk) if pool else map(_task, tasks):
            results.append(r)
            if progress and (len(results) % step == 0 or len(results) == len(tasks)):
                print(f"\rsynth: {len(results)}/{len(tasks)} images", end="", file=sys.stderr, flush=True)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    if progress:
        print(file=sys.stderr)
    return results


def _check(images: int, classes: int, seed: int, workers: int, quality: int) -> None:
    if classes < 1 or images < classes:
        raise ValueError(f"need 1 <= classes <= images (each class gets images), got {classes=}, {images=}")
    if seed < 0 or workers < 1 or not 1 <= quality <= 100:
        raise ValueError(f"need seed >= 0, workers >= 1, 1 <= quality <= 100: {seed=} {workers=} {quality=}")


def synth_imagefolder(
    out: PathLike,
    images: int,
    classes: int,
    *,
    seed: int = 0,
    workers: int = 1,
    quality: int = 90,
    progress: bool = False,
) -> SynthReport:
    """Write a synthetic ImageNet-like ImageFolder: ``out/<wnid>/<wnid>_<i:06d>.JPEG``.

    With ``workers > 1`` (spawned processes), call it from under ``if __name__ == "__main__":`` in scripts.

    Args:
        out: Root folder (created if needed; existing files of the same names are replaced).
        images: Total number of images, spread over the classes as evenly as possible.
        classes: Number of classes; class names are wnid-like and depend on ``seed``.
        seed: Seed of the names and of every image (>= 0).
        workers: Processes to render with (the output does not depend on it).
        quality: JPEG quality; each image uses ``quality`` ±2.
        progress: Print a progress counter to stderr.

    Returns:
        A :class:`SynthReport`.

    Raises:
        ValueError: If ``images < classes`` or an argument is out of range.
        FileNotFoundError: If no package with bundled sample photos is installed.
    """
    _check(images, classes, seed, workers, quality)
    start, root, names = time.perf_counter(), Path(out), wnids(classes, seed)
    per_class, extra = divmod(images, classes)
    tasks: list[tuple] = []
    for c, name in enumerate(names):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class + (c < extra)):
            path = str(root / name / f"{name}_{i:06d}.JPEG")
            tasks.append((path, _TRAIN, name, c, seed, len(tasks), quality))
    results = _run(tasks, workers, progress)
    return SynthReport(root, len(results), names, sum(r[0] for r in results), time.perf_counter() - start)


def _class_names(classes: PathLike | Sequence[str] | int, seed: int) -> list[str]:
    if isinstance(classes, int):
        return wnids(classes, seed)
    if isinstance(classes, (str, os.PathLike)):
        if not Path(classes).is_dir():
            raise ValueError(f"class folder {classes} does not exist")
        names = sorted(p.name for p in Path(classes).iterdir() if p.is_dir() and not p.name.startswith("."))
    else:
        names = sorted(set(classes))
    if not names:
        raise ValueError(f"no class names found in {classes!r}")
    return names


def synth_val(
    out: PathLike,
    images: int,
    classes_dir_or_names: PathLike | Sequence[str] | int,
    *,
    seed: int = 0,
    workers: int = 1,
    quality: int = 90,
    progress: bool = False,
) -> SynthReport:
    """Write an ILSVRC-style validation set whose classes look like ``synth_imagefolder``'s.

    Layout: ``out/val/ILSVRC2012_val_%08d.JPEG`` (1-based) plus, in ``out/``, ``LOC_val_solution.csv``
    (Kaggle: ``ImageId,PredictionString``, the wnid then a box), ``ILSVRC2012_validation_ground_truth.txt``
    (devkit: one 1-based ILSVRC id per image) and ``synsets.txt`` (line ``i`` = wnid of ILSVRC id ``i``, in a
    deterministic non-sorted order like the real devkit's).

    Args:
        out: Root folder.
        images: Number of validation images (>= number of classes; every class appears).
        classes_dir_or_names: A train ImageFolder root (its sub-folders), wnids, or a class count (names
            from :func:`wnids` with ``seed``). Class ``k`` of the sorted names looks like train class ``k``.
        seed, workers, quality, progress: As for :func:`synth_imagefolder`.

    Returns:
        A :class:`SynthReport`.
    """
    names = _class_names(classes_dir_or_names, seed)
    n = len(names)
    _check(images, n, seed, workers, quality)
    start, root = time.perf_counter(), Path(out)
    (root / "val").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(np.random.SeedSequence([seed, _SYNSETS, n]))
    order = rng.permutation(n)
    synsets = [names[i] for i in (np.roll(order, 1) if n > 1 and np.all(order == np.arange(n)) else order)]
    ilsvrc_id = {wnid: i + 1 for i, wnid in enumerate(synsets)}
    labels = rng.permutation(np.concatenate([np.arange(n), rng.integers(0, n, images - n)]))
    files = [f"ILSVRC2012_val_{i + 1:08d}" for i in range(images)]
    tasks = [
        (str(root / "val" / f"{f}.JPEG"), _VAL, names[c], int(c), seed, i, quality)
        for i, (f, c) in enumerate(zip(files, labels, strict=True))
    ]
    results = _run(tasks, workers, progress)
    csv = ["ImageId,PredictionString"]
    for f, c, (_, w, h) in zip(files, labels, results, strict=True):
        box = rng.uniform([0.0, 0.0, 0.55, 0.55], [0.25, 0.25, 1.0, 1.0]) * [w, h, w, h]
        csv.append(f"{f},{names[c]} " + " ".join(str(int(v)) for v in box))
    text = {
        "LOC_val_solution.csv": csv,
        "ILSVRC2012_validation_ground_truth.txt": [str(ilsvrc_id[names[c]]) for c in labels],
        "synsets.txt": synsets,
    }
    for fname, lines in text.items():
        _write_atomic(root / fname, ("\n".join(lines) + "\n").encode())
    return SynthReport(root, len(results), names, sum(r[0] for r in results), time.perf_counter() - start)
