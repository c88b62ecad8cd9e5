"""Local training and evaluation of one torch model held as a flat float32 vector.

The server keeps the model as one numpy vector (all parameters, in ``named_parameters``
order); :class:`Trainer` loads it into a torch module, trains on one client's data and
hands back the trainable part as a vector. Only the parameters listed as trainable get
gradients (FedPT freezes the rest).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..layout import Layout


@dataclass(frozen=True)
class Prox:
    """FedDyn's extra terms: minimize L(θ) − ⟨g, θ⟩ + (α/2)‖θ − anchor‖² (trainable part)."""

    g: np.ndarray
    alpha: float
    anchor: np.ndarray


def frozen_names(
    model: nn.Module, *, patterns: tuple[str, ...] = (), fraction: float = 0.0
) -> list[str]:
    """Parameters to freeze: names matching a glob pattern, then the largest tensors, in
    order of size, as long as the frozen share stays at most ``fraction`` of all parameters."""
    named = [(n, p.numel()) for n, p in model.named_parameters()]
    total = sum(size for _, size in named)
    frozen = [n for n, _ in named if any(fnmatch.fnmatchcase(n, pat) for pat in patterns)]
    budget = fraction * total - sum(size for n, size in named if n in frozen)
    for name, size in sorted(named, key=lambda t: (-t[1], t[0])):
        if name in frozen:
            continue
        if size > budget:
            break
        frozen.append(name)
        budget -= size
    unknown = [pat for pat in patterns if not any(fnmatch.fnmatchcase(n, pat) for n, _ in named)]
    if unknown:
        names = ", ".join(n for n, _ in named)
        raise ValueError(f"freeze patterns {unknown} match no parameter; parameters: {names}")
    if len(frozen) == len(named):
        raise ValueError("every parameter would be frozen: nothing left to train")
    return frozen


class Trainer:
    """Train and evaluate ``model`` (classification, or next-token for 3-d outputs)."""

    def __init__(self, model: nn.Module, frozen: list[str] | tuple[str, ...] = ()) -> None:
        self.model = model
        # the vector: the parameters, then the floating-point buffers (BatchNorm running
        # statistics: part of the update, averaged like parameters); integer buffers
        # (num_batches_tracked) stay each copy's own
        named: list[tuple[str, torch.Tensor]] = list(model.named_parameters())
        self.num_parameters = len(named)
        named += [(n, b) for n, b in model.named_buffers() if b.is_floating_point()]
        self.params = [p for _, p in named]
        self.names = [n for n, _ in named]
        sizes = [p.numel() for p in self.params]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.num_params = int(self.offsets[-1])
        self.trainable = [n not in set(frozen) for n in self.names]
        for p, t in zip(self.params[: self.num_parameters], self.trainable, strict=False):
            p.requires_grad_(t)
        self.train_index = np.concatenate(
            [
                np.arange(self.offsets[i], self.offsets[i + 1])
                for i, t in enumerate(self.trainable)
                if t
            ]
        ).astype(np.int64)
        self.num_trainable = int(self.train_index.size)
        #: names and shapes of the trainable tensors, in the order of the trainable vector:
        #: codecs see the tensors of an update (all-zero ones decode to exactly zero)
        self.layout = Layout(
            tuple(
                (n, tuple(p.shape), "float32")
                for n, p, t in zip(self.names, self.params, self.trainable, strict=True)
                if t
            )
        )

    # -- vectors <-> module -------------------------------------------------------------
    def get_vector(self) -> np.ndarray:
        return np.concatenate([p.detach().reshape(-1).numpy() for p in self.params]).astype(
            np.float32, copy=False
        )

    def set_vector(self, vector: np.ndarray) -> None:
        with torch.no_grad():
            for i, p in enumerate(self.params):
                chunk = vector[self.offsets[i] : self.offsets[i + 1]]
                p.copy_(torch.from_numpy(np.ascontiguousarray(chunk)).view_as(p))

    def trainable_vector(self) -> np.ndarray:
        return np.concatenate(
            [
                p.detach().reshape(-1).numpy()
                for p, t in zip(self.params, self.trainable, strict=True)
                if t
            ]
        ).astype(np.float32, copy=False)

    # -- training -------------------------------------------------------------------------
    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if logits.dim() == 3:
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        return F.cross_entropy(logits, y)

    def train(
        self,
        start: np.ndarray,
        x: np.ndarray,
        y: np.ndarray,
        *,
        epochs: int,
        batch_size: int,
        lr: float,
        seed: int,
        prox: Prox | None = None,
    ) -> tuple[np.ndarray, float]:
        """Local SGD from the full vector ``start``; returns (trainable vector, mean loss).

        ``batch_size <= 0`` means the whole local dataset per step (FedSGD with one epoch).
        """
        self.set_vector(start)
        self.model.train()
        # the model's own random draws (dropout) too: keyed by (round, client) like the
        # batches, so that a client's update is the same on every engine and in every order
        torch.manual_seed(seed)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        n = len(yt)
        b = n if batch_size <= 0 else min(batch_size, n)
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.SGD([p for p, _ in self._trained_parameters()], lr=lr)
        prox_terms = None
        if prox is not None:
            prox_terms = self._split(prox.g), self._split(prox.anchor), prox.alpha
        total, steps = 0.0, 0
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen)
            for i in range(0, n, b):
                idx = order[i : i + b]
                opt.zero_grad(set_to_none=True)
                loss = self._loss(self.model(xt[idx]), yt[idx])
                loss.backward()
                if prox_terms is not None:
                    gs, anchors, alpha = prox_terms
                    with torch.no_grad():
                        for p, k in self._trained_parameters():  # buffers have no gradient
                            assert p.grad is not None
                            p.grad.add_(alpha * (p - anchors[k]) - gs[k])
                opt.step()
                total += float(loss.detach())
                steps += 1
        return self.trainable_vector(), total / max(steps, 1)

    def _trainable_params(self) -> list[torch.Tensor]:
        """The tensors of the trainable vector (parameters and float buffers), in order."""
        return [p for p, t in zip(self.params, self.trainable, strict=True) if t]

    def _trained_parameters(self) -> list[tuple[torch.Tensor, int]]:
        """The parameters the optimizer updates, with their index among
        :meth:`_trainable_params`."""
        out: list[tuple[torch.Tensor, int]] = []
        k = 0
        for i, (p, t) in enumerate(zip(self.params, self.trainable, strict=True)):
            if t:
                if i < self.num_parameters:
                    out.append((p, k))
                k += 1
        return out

    def _split(self, trainable_vec: np.ndarray) -> list[torch.Tensor]:
        """A trainable-part vector cut into tensors shaped like the trainable parameters."""
        out, pos = [], 0
        for p in self._trainable_params():
            k = p.numel()
            out.append(
                torch.from_numpy(np.ascontiguousarray(trainable_vec[pos : pos + k])).view_as(p)
            )
            pos += k
        return out

    @torch.no_grad()
    def evaluate(
        self, vector: np.ndarray, x: np.ndarray, y: np.ndarray, *, batch_size: int = 1024
    ) -> tuple[float, float]:
        """(accuracy, mean cross-entropy) of the full model ``vector`` on ``x``, ``y``."""
        self.set_vector(vector)
        self.model.eval()
        correct, loss_sum, count = 0, 0.0, 0
        for i in range(0, len(y), batch_size):
            xb, yb = (
                torch.from_numpy(x[i : i + batch_size]),
                torch.from_numpy(y[i : i + batch_size]),
            )
            logits = self.model(xb)
            if logits.dim() == 3:
                logits, yb = logits.reshape(-1, logits.shape[-1]), yb.reshape(-1)
            loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
            count += int(yb.numel())
        return correct / max(count, 1), loss_sum / max(count, 1)
