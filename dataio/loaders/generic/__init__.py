"""The generic path of :class:`dataio.DataLoader`: any dataset, through torch's own iterators (worker processes)
or worker threads with torch's contracts.

- :mod:`.epoch`: dataio's extras on either (stats, mid-epoch ``state_dict``, ``device=``, progress);
- :mod:`.threaded`: ``worker_mode="thread"``, torch's multiprocessing iterator semantics over threads;
- :mod:`.worker_info`: ``get_worker_info()`` answered per worker thread, with each worker's seeds.
"""
