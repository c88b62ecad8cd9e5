"""Server-side rules of FedAvg (with server optimizers) and FedDyn, on numpy vectors.

All vectors are the trainable part of the model (FedPT leaves the rest out). The round
itself (training, compression, dropping failed clients) is in :mod:`fedcodec.fl.process`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .client import Prox

SERVER_OPTIMIZERS = ("sgd", "momentum", "adam")
#: the server learning rate over the rounds: ``constant``, or ``cosine`` (lr at round r of
#: R: lr·(1 + cos(π(r − 1)/R))/2, from lr at round 1 to near 0 at round R)
LR_SCHEDULES = ("constant", "cosine")


def scheduled_lr(lr: float, schedule: str, round_: int, rounds: int) -> float:
    """The server learning rate of round ``round_`` (1-based) of ``rounds``.

    >>> scheduled_lr(1.0, "cosine", 1, 100), round(scheduled_lr(1.0, "cosine", 51, 100), 3)
    (1.0, 0.5)
    """
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        t = min(max(round_ - 1, 0), max(rounds, 1)) / max(rounds, 1)
        return lr * 0.5 * (1.0 + math.cos(math.pi * t))
    raise ValueError(f"unknown server lr schedule {schedule!r}; choose {', '.join(LR_SCHEDULES)}")


class FedAvg:
    """FedAvg (McMahan et al. 2017): weighted mean of the client updates, then a server
    step: ``sgd`` θ += lr·Δ̄; ``momentum`` (FedAvgM) m = β·m + Δ̄, θ += lr·m; ``adam``
    (FedAdam, Reddi et al. 2021) m = β₁m + (1−β₁)Δ̄, v = β₂v + (1−β₂)Δ̄², θ += lr·m/(√v + τ).
    ``lr_schedule`` (:data:`LR_SCHEDULES`) sets lr for each round of ``rounds``.
    """

    name = "fedavg"
    weighted = True

    def __init__(
        self,
        server_optimizer: str = "sgd",
        server_lr: float = 1.0,
        *,
        momentum: float = 0.9,
        beta1: float = 0.9,
        beta2: float = 0.99,
        tau: float = 1e-3,
        lr_schedule: str = "constant",
        rounds: int = 1,
    ) -> None:
        scheduled_lr(server_lr, lr_schedule, 1, rounds)  # an unknown schedule raises here
        self.lr_schedule, self.rounds = lr_schedule, int(rounds)
        if server_optimizer not in SERVER_OPTIMIZERS:
            raise ValueError(
                f"unknown server optimizer {server_optimizer!r}; "
                f"choose {', '.join(SERVER_OPTIMIZERS)}"
            )
        self.server_optimizer = server_optimizer
        self.server_lr = server_lr
        self.momentum, self.beta1, self.beta2, self.tau = momentum, beta1, beta2, tau

    def init_state(self, num_trainable: int) -> dict[str, np.ndarray]:
        if self.server_optimizer == "momentum":
            return {"m": np.zeros(num_trainable, np.float32)}
        if self.server_optimizer == "adam":
            return {
                "m": np.zeros(num_trainable, np.float32),
                "v": np.zeros(num_trainable, np.float32),
            }
        return {}

    def prox(self, state: dict[str, np.ndarray], client: int, start: np.ndarray) -> Prox | None:
        return None

    def after_client(self, state: dict[str, np.ndarray], client: int, delta: np.ndarray) -> None:
        """Client-side state after its update reached the server (none for FedAvg)."""

    def server_update(
        self,
        state: dict[str, np.ndarray],
        params: np.ndarray,
        start: np.ndarray,
        deltas: Sequence[np.ndarray],
        weights: Sequence[float],
        round_: int = 1,
    ) -> np.ndarray:
        """New trainable vector from the current one (``params``) and the decoded updates
        of round ``round_`` (1-based; it sets the learning rate under a schedule)."""
        w = np.asarray(weights, np.float64)
        mean = np.zeros_like(params, dtype=np.float32)
        for d, wk in zip(deltas, w / w.sum(), strict=True):
            mean += np.float32(wk) * d
        lr = np.float32(scheduled_lr(self.server_lr, self.lr_schedule, round_, self.rounds))
        if self.server_optimizer == "sgd":
            return params + lr * mean
        m = state["m"]
        if self.server_optimizer == "momentum":
            m *= np.float32(self.momentum)
            m += mean
            return params + lr * m
        v = state["v"]
        m *= np.float32(self.beta1)
        m += np.float32(1 - self.beta1) * mean
        v *= np.float32(self.beta2)
        v += np.float32(1 - self.beta2) * mean * mean
        return params + lr * m / (np.sqrt(v) + np.float32(self.tau))


class FedDyn(FedAvg):
    """FedDyn (Acar et al. 2021), with the update rules of the paper.

    Client k minimizes L_k(θ) − ⟨g_k, θ⟩ + (α/2)‖θ − θ^{t−1}‖², then
    g_k ← g_k − α(θ_k − θ^{t−1}). Server: h ← h − (α/m)Σ_k(θ_k − θ^{t−1}) over the round's
    clients (m = all clients), θ^t = mean_k θ_k − h/α. Under compression both sides use the
    decoded update for θ_k − θ^{t−1}, so the server's h stays the mean of the clients' g_k.
    """

    name = "feddyn"
    weighted = False

    def __init__(self, alpha: float = 0.01, *, num_clients: int) -> None:
        super().__init__("sgd", 1.0)
        if not alpha > 0:
            raise ValueError(f"FedDyn alpha must be > 0, got {alpha}")
        self.alpha = alpha
        self.num_clients = num_clients

    def init_state(self, num_trainable: int) -> dict[str, np.ndarray]:
        return {"h": np.zeros(num_trainable, np.float32)}

    def prox(self, state: dict[str, np.ndarray], client: int, start: np.ndarray) -> Prox:
        g = state.get(f"g/{client}")
        return Prox(g if g is not None else np.zeros_like(start), self.alpha, start)

    def after_client(self, state: dict[str, np.ndarray], client: int, delta: np.ndarray) -> None:
        key = f"g/{client}"
        g = state.get(key)
        state[key] = (g if g is not None else np.zeros_like(delta)) - np.float32(self.alpha) * delta

    def server_update(
        self,
        state: dict[str, np.ndarray],
        params: np.ndarray,
        start: np.ndarray,
        deltas: Sequence[np.ndarray],
        weights: Sequence[float],
        round_: int = 1,
    ) -> np.ndarray:
        total = np.zeros_like(start)
        for d in deltas:
            total += d
        h = state["h"]
        h -= np.float32(self.alpha / self.num_clients) * total
        return start + total / np.float32(len(deltas)) - h / np.float32(self.alpha)
