"""torch's worker processes over an ``s3://`` dataset that already served a batch: s3fs's client (its event-loop
thread and connections) belongs to the parent, so the forked child must connect again instead of hanging."""

from __future__ import annotations

import json

from tests.storage.conftest import RemoteDataset
from tests.test_fork_safety import run_case


def test_torch_workers_over_an_s3_dataset_after_use(s3_dataset: RemoteDataset) -> None:
    run_case(
        """
        import json
        ds = dataio.open_dataset(sys.argv[1], storage_options=json.loads(sys.argv[2]))
        ds.__getitems__([0, 1])
        keys_through_torch_workers(ds)
        """,
        s3_dataset.url,
        json.dumps(s3_dataset.options),
    )
