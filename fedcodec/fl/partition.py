"""Split a labelled dataset among clients: IID, Dirichlet(α) label skew, shards.

Each function returns one array of sample indices per client; all are seeded.

Examples
--------
>>> import numpy as np
>>> labels = np.repeat(np.arange(10), 60)
>>> parts = shards(labels, 30, shards_per_client=2, seed=0)
>>> sorted(len(np.unique(labels[p])) for p in parts)[-1] <= 2
True
"""

from __future__ import annotations

import numpy as np

PARTITIONS = ("iid", "dirichlet", "shards")


def iid(num_samples: int, num_clients: int, *, seed: int = 0) -> list[np.ndarray]:
    """Shuffle and deal out in (nearly) equal parts."""
    _check(num_samples, num_clients, 1)
    order = np.random.default_rng(seed).permutation(num_samples)
    return [np.sort(p) for p in np.array_split(order, num_clients)]


def dirichlet(
    labels: np.ndarray,
    num_clients: int,
    *,
    alpha: float = 0.5,
    min_size: int = 10,
    seed: int = 0,
    max_tries: int = 1000,
) -> list[np.ndarray]:
    """Label skew: each class is split among clients in Dirichlet(α) proportions.

    Redrawn until every client has at least ``min_size`` samples (as in Hsu et al. 2019
    and most FL code); small α gives clients few classes.
    """
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    labels = np.asarray(labels)
    _check(len(labels), num_clients, min_size)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            share = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(share)[:-1] * len(idx)).astype(np.int64)
            for k, piece in enumerate(np.split(idx, cuts)):
                parts[k].append(piece)
        out = [np.sort(np.concatenate(p)) for p in parts]
        if min(len(p) for p in out) >= min_size:
            return out
    raise ValueError(
        f"no Dirichlet({alpha}) split gave every one of {num_clients} clients {min_size} "
        "samples: lower min_size or num_clients, or raise alpha"
    )


def shards(
    labels: np.ndarray, num_clients: int, *, shards_per_client: int = 2, seed: int = 0
) -> list[np.ndarray]:
    """The FedAvg paper's pathological non-IID split: sort by label, cut into
    ``num_clients × shards_per_client`` shards, give each client ``shards_per_client``."""
    labels = np.asarray(labels)
    num_shards = num_clients * shards_per_client
    _check(len(labels), num_shards, 1)
    rng = np.random.default_rng(seed)
    order = np.argsort(labels, kind="stable")
    pieces = np.array_split(order, num_shards)
    assignment = rng.permutation(num_shards).reshape(num_clients, shards_per_client)
    return [np.sort(np.concatenate([pieces[s] for s in row])) for row in assignment]


def make(
    name: str,
    labels: np.ndarray,
    num_clients: int,
    *,
    alpha: float = 0.5,
    shards_per_client: int = 2,
    min_size: int = 10,
    seed: int = 0,
) -> list[np.ndarray]:
    """Partition by name: ``iid``, ``dirichlet`` or ``shards``."""
    if name == "iid":
        return iid(len(labels), num_clients, seed=seed)
    if name == "dirichlet":
        return dirichlet(labels, num_clients, alpha=alpha, min_size=min_size, seed=seed)
    if name == "shards":
        return shards(labels, num_clients, shards_per_client=shards_per_client, seed=seed)
    raise ValueError(f"unknown partition {name!r}; choose one of {', '.join(PARTITIONS)}")


def _check(num_samples: int, num_parts: int, min_size: int) -> None:
    if num_parts < 1:
        raise ValueError(f"need at least one client, got {num_parts}")
    if num_samples < num_parts * max(min_size, 1):
        raise ValueError(
            f"{num_samples} samples cannot give {num_parts} parts of at least "
            f"{max(min_size, 1)}: use fewer clients"
        )
