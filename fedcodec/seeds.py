"""Shared randomness: every seed a codec gets derives from one function, on both sides.

A seed is keyed by ``(seed, round, client_key, stream)``: the run's seed, the round (or
step), a client key that is stable across runs (a partition or client index, a rank;
never a framework's random node id, which would make runs irreproducible), and the
purpose of the randomness. Both sides of a link call :func:`derive_seed` with the same
keys, so nothing but the keys needs to be agreed.
"""

from __future__ import annotations

import numpy as np

#: Streams (purposes) of :func:`derive_seed`.
SAMPLE, TRAIN, UPLINK, DOWNLINK = 1, 2, 3, 4


def derive_seed(seed: int, round_: int, client_key: int, stream: int, *extra: int) -> int:
    """A 32-bit seed for one (round, client, purpose[, extra keys]).

    ``client_key`` may be -1 (the server's own draws); ``extra`` keys (e.g. a DDP bucket
    index) refine the stream.

    Examples
    --------
    >>> from fedcodec.seeds import UPLINK, derive_seed
    >>> derive_seed(0, 1, 2, UPLINK) == derive_seed(0, 1, 2, UPLINK) != derive_seed(0, 1, 3, UPLINK)
    True
    """
    keys = [int(seed), int(round_), int(client_key) + 1, int(stream), *(int(e) for e in extra)]
    if min(keys) < 0:
        raise ValueError(f"seed keys must be non-negative (client_key >= -1), got {keys}")
    return int(np.random.SeedSequence(keys).generate_state(1, np.uint32)[0])
