"""Which engine runs an experiment: the harness's own loop (:class:`.runner.Experiment`) or
Flower's simulation engine (:mod:`.flower_engine`). Apart from both, so that neither
imports the other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .runner import Experiment, TrainConfig

ENGINES = ("harness", "flower")


def run(
    config: TrainConfig,
    out: str | Path,
    *,
    engine: str = "harness",
    flower: Any = None,
    torch_threads: int | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Build an :class:`Experiment` and run it (``resume=``, ``progress=``, ``transport=``).

    ``engine="flower"`` runs it on Flower's simulation engine instead
    (:func:`fedcodec.fl.flower_engine.run_flower`, options ``flower=FlowerOptions(...)``);
    ``torch_threads`` sets torch's threads for the harness (one makes a CPU run
    reproducible bit for bit, as Flower's engine with one CPU per client is).
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose {' or '.join(ENGINES)}")
    if engine == "flower":
        unsupported = sorted(k for k in ("resume", "transport") if kwargs.get(k))
        if unsupported:
            raise ValueError(f"--engine flower does not support {', '.join(unsupported)}")
        from .flower_engine import run_flower

        return run_flower(config, out, options=flower, progress=kwargs.get("progress", True))
    transport = kwargs.pop("transport", None)
    before = torch.get_num_threads()
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    try:
        return Experiment(config, transport=transport).run(out, **kwargs)
    finally:
        torch.set_num_threads(before)
