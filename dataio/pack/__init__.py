"""Packing sources (image folders, ILSVRC tars, file lists) into checksummed, randomly addressable shards."""

from dataio.pack.packer import PackReport, collect_items, pack
from dataio.pack.plan import PackOptions, parse_size

__all__ = ["PackOptions", "PackReport", "collect_items", "pack", "parse_size"]
