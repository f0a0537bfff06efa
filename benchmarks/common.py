"""Helpers shared by the benchmark scripts (not a test module): synth sets, cache dropping, tables."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
WORK = Path(__file__).resolve().parent / "work"


def synth_set(images: int, classes: int, workers: int = 2) -> Path:
    """A cached ``dataio synth`` ImageFolder under benchmarks/work/."""
    from dataio.pack.synth import synth_imagefolder

    out = WORK / f"synth-{images}-{classes}"
    marker = out / ".complete"
    if not marker.exists():
        synth_imagefolder(out, images, classes, seed=0, workers=workers)
        marker.write_text("ok")
    return out


def drop_cache(paths: Iterable[Path]) -> None:
    """Evicts files from the page cache (POSIX_FADV_DONTNEED; works without root) so reads hit the disk."""
    os.sync()
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def median_time(fn: Callable[[], object], repeats: int, before: Callable[[], object] | None = None) -> float:
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def photo_set(images: int, classes: int, seed: int = 0) -> Path:
    """A cached ImageFolder of ImageNet-shaped JPEGs under benchmarks/work/: 400-500 × 250-470 px (some portrait),
    ~60-110 KB each (median ~75 KB), cut at full resolution from the photos bundled with scikit-image, with
    sensor-like noise (σ 7-10) and JPEG qualities 92-96: the texture a decoder meets in ImageNet (``dataio
    synth``'s smooth ~40 KB images flatter it). Deterministic in ``(images, classes, seed)``."""
    import io

    import numpy as np
    from PIL import Image

    from dataio.pack.synth import bundled_photos

    out = WORK / f"photos-{images}-{classes}-{seed}"
    marker = out / ".complete"
    if marker.exists():
        return out
    sources = [np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) for p in bundled_photos()]
    for i in range(images):
        rng = np.random.default_rng((seed, i))
        cls = i % classes
        src = sources[(cls * 7 + int(rng.integers(0, 3))) % len(sources)]
        w, h = int(rng.integers(400, 501)), int(rng.integers(250, 471))
        if rng.random() < 0.2:
            w, h = h, w
        scale = max(w / src.shape[1], h / src.shape[0]) * float(rng.uniform(1.0, 1.3))
        img = Image.fromarray(src.astype(np.uint8)).resize(
            (max(w, round(src.shape[1] * scale)), max(h, round(src.shape[0] * scale))), Image.Resampling.BICUBIC
        )
        x, y = int(rng.integers(0, img.width - w + 1)), int(rng.integers(0, img.height - h + 1))
        pix = np.asarray(img.crop((x, y, x + w, y + h)), dtype=np.float32)
        pix = pix * rng.uniform(0.8, 1.2, 3) + rng.normal(0.0, float(rng.uniform(7.0, 10.0)), pix.shape)
        buf = io.BytesIO()
        Image.fromarray(np.clip(pix, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=int(rng.integers(92, 97)))
        folder = out / f"n{cls:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"img_{i:06d}.JPEG").write_bytes(buf.getvalue())
    marker.write_text("ok")
    return out
