"""Tasks: a dataset and the model family that goes with it, plus sensible defaults."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from . import data as _data
from .models import CNN, MLP, CharLSTM, two_nn


@dataclass(frozen=True)
class TaskDefaults:
    model: str
    client_lr: float
    batch_size: int
    num_clients: int | None  # None: the task's natural clients


DEFAULTS: dict[str, TaskDefaults] = {
    "digits": TaskDefaults("mlp", 0.1, 10, 20),
    "synthetic": TaskDefaults("logreg", 0.05, 10, 30),
    "fashion_mnist": TaskDefaults("cnn", 0.05, 10, 100),
    "shakespeare": TaskDefaults("lstm_small", 4.0, 10, None),
}

MODELS: dict[str, dict[str, Callable[[_data.FederatedData], nn.Module]]] = {
    "digits": {
        "mlp": lambda d: MLP(64, d.num_classes, (64,)),
        "logreg": lambda d: MLP(64, d.num_classes, ()),
    },
    "synthetic": {
        "logreg": lambda d: MLP(d.input_shape[0], d.num_classes, ()),
        "mlp": lambda d: MLP(d.input_shape[0], d.num_classes, (64,)),
    },
    "fashion_mnist": {
        "cnn": lambda d: CNN(d.num_classes),
        "2nn": lambda d: two_nn(784, d.num_classes),
    },
    "shakespeare": {
        # the FedAvg paper's model and a size that trains on two CPU cores
        "lstm": lambda d: CharLSTM(d.num_classes, hidden=256, layers=2),
        "lstm_small": lambda d: CharLSTM(d.num_classes, hidden=64, layers=2),
    },
}

TASKS = tuple(DEFAULTS)


def load_task(
    name: str,
    *,
    num_clients: int | None = None,
    partition: str | None = None,
    alpha: float = 0.5,
    min_size: int = 10,
    seed: int = 0,
    data_dir: str | None = None,
    synthetic_alpha: float = 1.0,
    synthetic_beta: float = 1.0,
) -> _data.FederatedData:
    """Load a task's federated data (seeded); a missing dataset names its install command."""
    if name not in DEFAULTS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    k = num_clients if num_clients is not None else DEFAULTS[name].num_clients
    kwargs: dict[str, Any] = {"seed": seed}
    if name in ("digits", "fashion_mnist"):
        kwargs.update(num_clients=k, alpha=alpha, min_size=min_size)
        if partition is not None:
            kwargs["partition"] = partition
    elif partition not in (None, "natural"):
        raise ValueError(
            f"task {name!r} has natural clients; partition {partition!r} does not apply"
        )
    if name == "digits":
        return _data.load_digits(**kwargs)
    if name == "fashion_mnist":
        return _data.load_fashion_mnist(data_dir, **kwargs)
    if name == "synthetic":
        return _data.load_synthetic(synthetic_alpha, synthetic_beta, num_clients=k or 30, seed=seed)
    return _data.load_shakespeare(max_clients=k, seed=seed)


def build_model(task: str, model: str | None, data: _data.FederatedData) -> nn.Module:
    name = model or DEFAULTS[task].model
    if name not in MODELS[task]:
        raise ValueError(f"task {task!r} has models {', '.join(MODELS[task])}, not {name!r}")
    return MODELS[task][name](data)
