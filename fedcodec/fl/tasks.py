"""Tasks: a dataset and the model family that goes with it, plus sensible defaults; and
the user's own tasks (``module:function`` or an entry point of group ``fedcodec.tasks``)."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import numpy as np
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


# -- the user's own tasks -----------------------------------------------------------------
TASK_ENTRY_POINTS = "fedcodec.tasks"


@dataclass
class Task:
    """A federated task of the user's: what ``--task package.module:function`` (or an entry
    point of group ``fedcodec.tasks``) returns.

    ``clients``: per client, its training and test data, each a pair of arrays
    ``(x, y)`` (``y`` int64 class labels, or int64 next tokens of shape ``x.shape`` for
    a language model whose logits are ``(batch, time, classes)``) or a torch ``Dataset``
    of ``(x, y)`` items. ``model``: builds a fresh ``nn.Module`` (called once; the
    harness seeds torch before). ``num_classes`` and ``input_shape`` describe the data;
    ``client_lr`` and ``batch_size`` are the task's defaults.

    Examples
    --------
    >>> import numpy as np, torch
    >>> rng = np.random.default_rng(0)
    >>> data = [(rng.normal(size=(20, 3)).astype(np.float32), rng.integers(0, 2, 20))] * 2
    >>> task = Task(clients=[(d, d) for d in data], model=lambda: torch.nn.Linear(3, 2),
    ...             num_classes=2, input_shape=(3,))
    >>> task.federated_data("mine").summary()["train_samples"]
    40
    """

    clients: Sequence[tuple[Any, Any]]
    model: Callable[[], nn.Module]
    num_classes: int
    input_shape: tuple[int, ...]
    client_lr: float = 0.05
    batch_size: int = 10
    names: Sequence[str] = field(default_factory=list)

    def federated_data(self, name: str) -> _data.FederatedData:
        """The clients as the harness holds them (arrays; datasets read once)."""
        if not self.clients:
            raise ValueError(f"task {name!r} has no clients")
        out = []
        for k, pair in enumerate(self.clients):
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise ValueError(
                    f"task {name!r}: client {k} must be (train, test), got {type(pair).__name__}"
                )
            (tx, ty), (vx, vy) = (
                _arrays(part, name, k, what)
                for part, what in zip(pair, ("train", "test"), strict=True)
            )
            label = self.names[k] if k < len(self.names) else f"client{k}"
            out.append(_data.ClientData(label, tx, ty, vx, vy))
        return _data.FederatedData(name, out, int(self.num_classes), tuple(self.input_shape))


def _arrays(part: Any, task: str, k: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y int64) from a pair of arrays or a torch Dataset of (x, y) items: floating
    inputs become float32 (the harness's models are float32), any other input keeps its
    dtype (int64 token ids for an ``nn.Embedding``, uint8 pixels a model scales itself)."""
    if isinstance(part, (tuple, list)) and len(part) == 2:
        x, y = part
    elif hasattr(part, "__getitem__") and hasattr(part, "__len__"):  # a torch Dataset
        items = [part[i] for i in range(len(part))]
        x = np.stack([np.asarray(item[0]) for item in items]) if items else np.zeros((0,))
        y = np.asarray([np.asarray(item[1]) for item in items])
    else:
        raise ValueError(
            f"task {task!r}: client {k}'s {what} data must be (x, y) arrays or a torch Dataset"
        )
    x = np.asarray(x)
    if x.dtype.kind == "f":
        x = x.astype(np.float32, copy=False)
    elif x.dtype.kind not in "biu":
        raise ValueError(
            f"task {task!r}: client {k}'s {what} inputs have dtype {x.dtype}; give numbers "
            "(floating inputs are trained as float32, integer and bool inputs as they are)"
        )
    x = np.ascontiguousarray(x)
    y = np.ascontiguousarray(np.asarray(y, dtype=np.int64))
    if len(x) != len(y):
        raise ValueError(
            f"task {task!r}: client {k}'s {what} data has {len(x)} inputs and {len(y)} labels"
        )
    return x, y


def is_builtin(name: str) -> bool:
    return name in DEFAULTS


def load_user_task(name: str, *, seed: int = 0, num_clients: int | None = None) -> Task:
    """The :class:`Task` of ``name``: ``package.module:function`` or the name of an entry
    point of group ``fedcodec.tasks``; the function gets ``seed`` and ``num_clients`` if
    it takes them."""
    if ":" in name:
        module_name, _, attr = name.partition(":")
        # resolve the module from the current folder first, as ``python -m`` would (the
        # ``fedcodec`` script's own folder is on sys.path instead of the current one)
        cwd = os.getcwd()
        if cwd not in sys.path and "" not in sys.path:
            sys.path.insert(0, cwd)
        try:
            fn = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(
                f"task {name!r}: cannot load {attr!r} from module {module_name!r} ({exc}); "
                "write --task package.module:function with the module importable"
            ) from None
    else:
        found = [ep for ep in entry_points(group=TASK_ENTRY_POINTS) if ep.name == name]
        if not found:
            raise ValueError(
                f"unknown task {name!r}; choose one of {', '.join(TASKS)}, a function as "
                f"package.module:function, or an entry point of group {TASK_ENTRY_POINTS!r}"
            )
        fn = found[0].load()
    params = inspect.signature(fn).parameters
    kwargs: dict[str, Any] = {}
    if "seed" in params:
        kwargs["seed"] = seed
    if "num_clients" in params:
        kwargs["num_clients"] = num_clients
    task = fn(**kwargs)
    if not isinstance(task, Task):
        raise ValueError(
            f"task {name!r}: {getattr(fn, '__name__', fn)!r} returned "
            f"{type(task).__name__}, not a fedcodec.fl.Task"
        )
    return task
