"""Uplink rates in proportion to a client's training examples (issue 25).

FedAvg weights a client's update by its number of training examples ``n_k``, so the
error its codec adds reaches the round's mean multiplied by ``n_k / Σ n``: at one rate for
every client, most of the mean's coding error comes from the clients with the most data,
and the bits of the clients with little data buy almost nothing. Giving client k the rate
``R · clip(n_k / reference, low, high)`` moves bits to where they count, and the average
rate over the clients stays ``R`` when ``reference`` is chosen from the population of
clients (:func:`reference_examples`: the mean of the clipped shares is 1).

The protocol needs nothing in the payload: the rate is the encoder's choice (every codec's
payload describes itself), and a client needs only its own ``n_k`` and the ``reference``
the server computes once from the clients' sizes (the harness knows them; a Flower
deployment passes it to ``FedcodecStrategy(reference_examples=...)``).

Examples
--------
>>> from fedcodec.rate_share import reference_examples, example_share, scaled_config
>>> sizes = [2, 10, 50, 400]
>>> ref = reference_examples(sizes)
>>> shares = [example_share(n, ref) for n in sizes]
>>> round(sum(shares) / len(shares), 6)
1.0
>>> scaled_config({"id": "rdq_unbiased", "bits_per_param": 0.1}, 2.0)
{'id': 'rdq_unbiased', 'bits_per_param': 0.2}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: a codec config's rate target, in the order looked for
RATE_KEYS = ("bits_per_param", "bits")
#: default bounds of a client's share: at 0.1 bit/param, 0.02 (about the smallest payload
#: of a 58k-param model) to 1 bit/param
LOW, HIGH = 0.2, 10.0


def rate_key(config: Mapping[str, Any]) -> str:
    """The key of ``config`` that sets its rate (``bits_per_param``; EDEN's ``bits``)."""
    for key in RATE_KEYS:
        if key in config:
            return key
    raise ValueError(
        f"rates by examples need a codec config with a rate target ({' or '.join(RATE_KEYS)}), "
        f"got {dict(config)!r}: e.g. {{'id': 'rdq_unbiased', 'bits_per_param': 0.1}}"
    )


def scaled_config(config: Mapping[str, Any], share: float) -> dict[str, Any]:
    """``config`` with its rate target multiplied by ``share``."""
    key = rate_key(config)
    return {**config, key: float(config[key]) * float(share)}


def example_share(
    num_examples: float, reference: float, *, low: float = LOW, high: float = HIGH
) -> float:
    """A client's share of the configured rate: ``clip(num_examples / reference, low, high)``."""
    if not reference > 0:
        raise ValueError(f"reference must be positive, got {reference}")
    return min(max(float(num_examples) / float(reference), low), high)


def reference_examples(sizes: Sequence[float], *, low: float = LOW, high: float = HIGH) -> float:
    """The reference size for which the clients' mean share is 1 (bisection in log
    space; the plain mean size when no share is clipped)."""
    values = [float(s) for s in sizes]
    if not values or min(values) < 0 or max(values) <= 0:
        raise ValueError("reference_examples needs sizes >= 0, not all zero")
    if not 0 < low <= 1 <= high:
        raise ValueError(f"need 0 < low <= 1 <= high, got low={low}, high={high}")

    def mean_share(ref: float) -> float:
        return sum(min(max(v / ref, low), high) for v in values) / len(values)

    # at lo every client with data gets ``high`` (the largest mean share there is), at hi
    # every client ``low`` (<= 1)
    lo, hi = min(v for v in values if v > 0) / high / 2, max(values) / low * 2
    for _ in range(200):
        mid = (lo * hi) ** 0.5
        if mean_share(mid) > 1.0:
            lo = mid
        else:
            hi = mid
    return (lo * hi) ** 0.5
