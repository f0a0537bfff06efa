"""The fast path of :class:`dataio.DataLoader` over a ShardDataset: read → decode/augment → collate → device.

Stages and their bounds::

    read stage         ds.read_records(...): RangeReader, many ranged reads in flight, in the sampler's read
                       order (shard mode: shard after shard) re-sequenced to delivery order
       │  ring of ≤ prefetch_factor × batch_size records, in chunks inside one batch (lock-free, native)
    decode stage       a Decoder: native (default; 2 Python threads hand whole batches to
                       dataio._native.ImageKernel, whose C threads decode the crop window, resize, flip and
                       normalise every image into its batch slot, one GIL release per batch) or Python
                       (decode_threads Python threads, ImagePipeline.process per image)
       │  ring of reusable batch buffers (pinned with a GPU); indices of finished batches through a ring
    consumer           yields views of finished batches (with a GPU: copied on a side stream, normalised there)

The wing's modules, one concept each:

- :mod:`.iterator`: the consumer (``next``, ``close``, accounting) and the building of an epoch;
- :mod:`.control`: :class:`EpochControl`, the life of the epoch's threads (stop, fail, start, shutdown);
- :mod:`.stages`: the read, decode and transfer stages, each given only the rings and objects it uses;
- :mod:`.slots`: :class:`BatchRing` and its :class:`SlotView` (the one writer of a batch's rows, labels and
  validity), the buffer pool, the normalisation;
- :mod:`.decoders`: the :class:`Decoder` protocol and its native and Python implementations;
- :mod:`.tuning`: the live settings (decode threads, prefetch, reads in flight) and their autotuner;
- :mod:`.device`: copies to the accelerator on a side stream.

Memory is flat: records in the ring plus the ring of batch buffers, whatever the dataset size. Augmentation
randomness of sample ``i`` in epoch ``e`` comes from ``(seed, e, i)`` only, so batches do not depend on thread
timing or on which decoder ran, and a loader restored from ``state_dict()`` continues with exactly the batches
the old one would have produced. An iterator abandoned mid-epoch is garbage-collected and its threads stop;
``close()`` stops them at once; ``next()`` after either raises StopIteration. Settings, buffers, stats and the
native kernel live in the loader's :class:`~dataio.loaders.runtime.LoaderRuntime`.
"""

# The package imports nothing itself: the loader runtime uses the slots and tuning modules, and the iterator uses
# the runtime, so an eager import of the iterator here would make a circle. Import from the modules.
