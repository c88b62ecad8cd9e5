"""Federated training harness: real models on real client data, every byte counted.

Needs the ``torch`` extra (``pip install 'fedcodec[torch]'``). See :class:`TrainConfig`
and :func:`run`, or the command line ``fedcodec train``.

Examples
--------
>>> import tempfile
>>> from fedcodec.fl import TrainConfig, run
>>> config = TrainConfig(task="digits", rounds=3, codec={"id": "rdq", "bits_per_param": 2.0})
>>> summary = run(config, tempfile.mkdtemp(), progress=False)
>>> round(summary["mean_bits_per_param"], 1), summary["final_accuracy"] > 0.2
(2.0, True)
"""

from __future__ import annotations

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "fedcodec.fl needs PyTorch: pip install 'fedcodec[torch]' (torch==2.13.0, CPU build)"
    ) from exc

from .algorithms import FedAvg, FedDyn
from .client import Prox, Trainer, frozen_names
from .data import (
    ClientData,
    DatasetMissingError,
    FederatedData,
    load_digits,
    load_fashion_mnist,
    load_shakespeare,
    load_synthetic,
    parse_play,
)
from .engines import run
from .process import ClientError, FederatedProcess, ServerState, derive_seed
from .runner import ALGORITHMS, Experiment, TrainConfig
from .tasks import TASKS, Task, build_model, load_task, load_user_task

__all__ = [
    "ALGORITHMS",
    "TASKS",
    "ClientData",
    "ClientError",
    "DatasetMissingError",
    "Experiment",
    "FedAvg",
    "FedDyn",
    "FederatedData",
    "FederatedProcess",
    "Prox",
    "ServerState",
    "Task",
    "TrainConfig",
    "Trainer",
    "build_model",
    "derive_seed",
    "frozen_names",
    "load_digits",
    "load_fashion_mnist",
    "load_shakespeare",
    "load_synthetic",
    "load_task",
    "load_user_task",
    "parse_play",
    "run",
]
