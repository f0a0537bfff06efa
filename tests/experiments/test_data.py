"""The experiment's data: the packaged digits, a stratified split, class-sorted and shuffled packs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dataio
from dataio.experiments.config import ShuffleExperimentConfig
from dataio.experiments.data import load_source, prepare_data, split_per_class


def test_split_is_stratified_disjoint_and_deterministic() -> None:
    labels = np.repeat(np.arange(3), [10, 7, 5])[np.random.default_rng(0).permutation(22)]
    train, heldout = split_per_class(labels, 0.2)
    assert not set(train) & set(heldout) and len(train) + len(heldout) == 22
    assert np.bincount(labels[heldout]).tolist() == [2, 1, 1]
    again = split_per_class(labels, 0.2)
    assert np.array_equal(train, again[0]) and np.array_equal(heldout, again[1])
    capped, _ = split_per_class(labels, 0.2, max_per_class=4)
    assert np.bincount(labels[capped]).tolist() == [3, 3, 3]
    with pytest.raises(ValueError, match="too few"):
        split_per_class(np.array([0, 1, 1, 1]), 0.5)


def test_digits_ship_with_scikit_learn() -> None:
    images, labels = load_source("digits")
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8 and images.max() == 255
    assert sorted(set(labels.tolist())) == list(range(10))
    with pytest.raises(ValueError, match="unknown dataset"):
        load_source("imagenet")


def test_packs_are_class_sorted_or_shuffled_with_the_same_samples(tmp_path: Path) -> None:
    config = ShuffleExperimentConfig.quick(orders=("sorted", "shuffled"), max_per_class=6)
    data = prepare_data("digits", config, tmp_path)
    assert (data.num_train, data.num_heldout, data.num_classes) == (50, 10, 10)
    with dataio.open_dataset(data.train["sorted"]) as ds:
        sorted_labels = ds.labels.copy()
        keys = sorted(ds[i]["key"] for i in range(len(ds)))
        assert len(ds.shard_sizes) > 3  # small shards: many of them
    assert np.all(np.diff(sorted_labels) >= 0)
    with dataio.open_dataset(data.train["shuffled"]) as ds:
        assert sorted(ds[i]["key"] for i in range(len(ds))) == keys
        assert np.any(np.diff(ds.labels) < 0)
    again = prepare_data("digits", config, tmp_path)  # reused, not rewritten
    assert again == data
