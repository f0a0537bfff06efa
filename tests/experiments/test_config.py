"""ShuffleExperimentConfig: validation names what is wrong; the grid's runs and digest."""

from __future__ import annotations

import pytest

from dataio.experiments.config import RunSpec, ShuffleExperimentConfig


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"modes": ("global", "random")}, "modes: unknown"),
        ({"datasets": ("cifar",)}, "datasets: unknown"),
        ({"orders": ()}, "orders must be a non-empty tuple"),
        ({"world_sizes": (1, 3)}, "not divisible by world size"),
        ({"world_sizes": (2, 2)}, "distinct"),
        ({"seeds": (-1,)}, "seed must be an integer >= 0"),
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"cache_fraction": 1.5}, "cache_fraction"),
        ({"heldout_fraction": 0}, "heldout_fraction"),
        ({"lr": float("nan")}, "lr must be a finite number"),
        ({"shard_size": 100}, "shard_size"),
        ({"max_per_class": 1}, "max_per_class"),
        ({"model": "mlp"}, "model must be one of"),
        ({"weight_decay": -0.1}, "weight_decay must be a finite number"),
    ],
)
def test_invalid_options_are_named(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ShuffleExperimentConfig(**overrides)


def test_lists_become_tuples_and_overrides_revalidate() -> None:
    config = ShuffleExperimentConfig(modes=["global", "local"], world_sizes=[1, 2])  # type: ignore[arg-type]
    assert config.modes == ("global", "local") and config.world_sizes == (1, 2)
    assert config.with_overrides(epochs=3, lr=None).epochs == 3
    with pytest.raises(ValueError, match="global_batch"):
        config.with_overrides(global_batch=3)


def test_runs_cover_the_grid_seed_by_seed() -> None:
    config = ShuffleExperimentConfig(seeds=(0, 1), world_sizes=(1, 2, 4))
    runs = config.runs()
    assert len(runs) == len(set(runs)) == 2 * 2 * 5 * 3  # seeds × orders × modes × world sizes
    first_seed = [r for r in runs if r.seed == 0]
    assert runs[: len(first_seed)] == first_seed  # every mode and K of seed 0 before seed 1
    assert len({r.run_id for r in runs}) == len(runs)
    assert RunSpec("digits", "sorted", "local", 4, 1).run_id == "digits-sorted-local-k4-s1"


def test_per_rank_batch_keeps_the_global_batch() -> None:
    config = ShuffleExperimentConfig(global_batch=64, world_sizes=(1, 2, 4, 8))
    assert [config.per_rank_batch(k) * k for k in config.world_sizes] == [64] * 4


def test_digest_ignores_the_grid_axes_but_not_training_options() -> None:
    base = ShuffleExperimentConfig()
    assert base.run_digest() == base.with_overrides(seeds=(5,), modes=("global",), world_sizes=(2,)).run_digest()
    assert base.run_digest() != base.with_overrides(epochs=base.epochs + 1).run_digest()
    assert base.run_digest() != base.with_overrides(lr=0.01).run_digest()


def test_only_cache_seeds_on_the_first_order_read_through_the_cache() -> None:
    config = ShuffleExperimentConfig(cache_seeds=(1,))
    assert config.cached(RunSpec("digits", "sorted", "global", 2, 1))
    assert not config.cached(RunSpec("digits", "shuffled", "global", 2, 1))
    assert not config.cached(RunSpec("digits", "sorted", "global", 2, 0))
