"""Bounded shuffle buffer (the WebDataset / DALI / tf.data style), simulated exactly but vectorised.

The simulated buffer has ``K = buffer_size`` slots and works like this on a stream ``x[0..m-1]``:

1. Fill: slot ``j`` receives ``x[j]`` for ``j < K``.
2. Steady state, for ``t = 0 .. m - K - 1``: draw a slot ``c[t]`` uniformly from ``[0, K)``, emit its
   occupant, and put ``x[K + t]`` into that slot.
3. Drain: emit the ``K`` remaining occupants in a uniformly random order.

If ``m <= K`` the buffer never fills and the output is a uniform permutation of the stream.

A sequential simulation costs one Python step per sample. Instead we note that the occupant of slot
``c[t]`` at step ``t`` is whatever was put there the previous time that slot was drawn: ``x[K + t']``
for the latest ``t' < t`` with ``c[t'] == c[t]``, or the initial ``x[c[t]]`` if there is none. A
stable argsort of the slot draws (a radix sort, as the draws are small integers) groups the steps of
each slot in time order, which gives every "previous draw of the same slot" at once. The draws are
processed in chunks of 64 Ki steps (for cache locality), carrying the slot occupants from chunk to
chunk. The result is identical, draw for draw, to the sequential simulation (``tests/sampling``
checks this against a plain-Python reference).

Consequence used by the property tests: an element cannot leave the buffer before it has entered it,
so ``x[i]`` is emitted at output position ``>= i - K + 1``; it is never more than ``K - 1`` positions
earlier than in the input stream.
"""

from __future__ import annotations

import numpy as np

from dataio.sampling.layout import smallest_uint

__all__ = ["shuffle_buffer_order"]

_CHUNK = 1 << 16


def shuffle_buffer_order(length: int, buffer_size: int, rng: np.random.Generator) -> np.ndarray:
    """Return the input positions in the order a bounded shuffle buffer emits them.

    Args:
        length: Number of elements ``m`` in the input stream.
        buffer_size: Number of slots ``K`` (>= 1); ``K == 1`` passes the stream through unchanged.
        rng: Source of the slot draws (``m - K`` draws from ``integers``) and of the final drain
            (one ``permutation``).

    Returns:
        int64 permutation ``p`` of ``range(length)``: output element ``t`` is input ``x[p[t]]``.
    """
    if buffer_size < 1:
        raise ValueError(f"buffer_size must be >= 1, got {buffer_size}")
    k = int(buffer_size)
    if length <= k:
        return rng.permutation(length).astype(np.int64, copy=False)
    steps = length - k
    slots = rng.integers(0, k, size=steps, dtype=smallest_uint(k))
    occupant = np.arange(k, dtype=np.int64)
    out = np.empty(length, dtype=np.int64)
    for begin in range(0, steps, _CHUNK):
        chunk = slots[begin : begin + _CHUNK]
        by_slot = np.argsort(chunk, kind="stable")
        grouped = chunk[by_slot]
        first = np.empty(chunk.size, dtype=bool)
        first[0] = True
        np.not_equal(grouped[1:], grouped[:-1], out=first[1:])
        source = np.empty(chunk.size, dtype=np.int64)
        source[1:] = by_slot[:-1]
        source += k + begin
        source[first] = occupant[grouped[first]]
        out[begin + by_slot] = source
        last = np.empty(chunk.size, dtype=bool)
        last[-1] = True
        last[:-1] = first[1:]
        occupant[grouped[last]] = k + begin + by_slot[last]
    out[steps:] = occupant[rng.permutation(k)]
    return out
