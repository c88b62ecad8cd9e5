"""A task fedcodec does not ship: its own model and data, for ``--task``.

From a clone, after ``make install`` (the same commands as docs/fl.md; ``--task`` finds
``blobs_task`` in the current folder, as ``python -m`` would)::

    cd examples/own_task
    ../../.venv/bin/fedcodec train --task blobs_task:make_task --rounds 20 --codec '{"id": "rdq"}'
    ../../.venv/bin/fedcodec frontier --task blobs_task:make_task --rounds 5

Each writes a new folder under ``runs/`` (printed; ``--out`` names one). Ten clients each
hold Gaussian blobs of 8 features in 4 classes, with client-specific class means
(non-IID), as a torch ``TensorDataset`` for training and as arrays for testing; the model
is a small network with its own layers.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from fedcodec.fl import Task


class BlobNet(nn.Module):
    """A two-layer network with a residual connection (not one of fedcodec's models)."""

    def __init__(self, features: int = 8, hidden: int = 32, classes: int = 4) -> None:
        super().__init__()
        self.inp = nn.Linear(features, hidden)
        self.mid = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x))
        return self.out(h + torch.relu(self.mid(h)))


def make_task(seed: int = 0, num_clients: int | None = None) -> Task:
    rng = np.random.default_rng(seed)
    k = num_clients or 10
    means = rng.normal(scale=2.0, size=(4, 8))
    clients = []
    for _ in range(k):
        shift = rng.normal(scale=0.5, size=(4, 8))  # each client's own view of the classes

        def draw(n: int, shift: np.ndarray = shift) -> tuple[np.ndarray, np.ndarray]:
            y = rng.integers(0, 4, n)
            x = (means[y] + shift[y] + rng.normal(size=(n, 8))).astype(np.float32)
            return x, y.astype(np.int64)

        tx, ty = draw(60)
        train = TensorDataset(torch.from_numpy(tx), torch.from_numpy(ty))
        clients.append((train, draw(20)))
    return Task(clients=clients, model=BlobNet, num_classes=4, input_shape=(8,), client_lr=0.1)
