"""One federated round with compression, FedJAX style: ``init()`` and
``apply(state, clients) -> (state, diagnostics)``.

Every random draw derives from ``(seed, round, client, stream)`` (:func:`derive_seed`), so
the state below (plus the seed) is all a checkpoint needs to continue bit for bit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..codec import Codec
from ..error_feedback import ErrorFeedback
from ..identity import Identity
from ..seeds import DOWNLINK, SAMPLE, TRAIN, UPLINK, derive_seed
from .algorithms import FedAvg
from .client import Trainer
from .data import FederatedData

log = logging.getLogger("fedcodec.fl")

Transport = Callable[[int, int, bytes], bytes]


class ClientError(RuntimeError):
    """A client's training (the user's model or code) or encoding raised: the run stops,
    naming the round and the client, with the original exception as its cause."""

    def __init__(self, round_: int, client: int, stage: str, exc: BaseException) -> None:
        super().__init__(
            f"round {round_}, client {client}: {stage} failed: {type(exc).__name__}: {exc} "
            "(tolerate_client_errors=True / --tolerate-client-errors drops such clients)"
        )
        self.round, self.client, self.stage = round_, client, stage


@dataclass
class ServerState:
    """What survives between rounds (and goes into a checkpoint).

    ``params``: the server's model (full vector). ``broadcast``: the model as the clients
    hold it after the last downlink (equal to ``params`` without downlink compression).
    ``algo``: server optimizer / FedDyn state (``h`` and each client's ``g/<k>``).
    ``residuals``: uplink error-feedback memory per client.
    """

    round: int
    params: np.ndarray
    broadcast: np.ndarray
    algo: dict[str, np.ndarray] = field(default_factory=dict)
    residuals: dict[int, np.ndarray] = field(default_factory=dict)
    uplink_bits_total: int = 0
    downlink_bits_total: int = 0

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {
            "round": np.array(self.round, np.int64),
            "params": self.params,
            "broadcast": self.broadcast,
            "bits_total": np.array([self.uplink_bits_total, self.downlink_bits_total], np.int64),
        }
        out.update({f"algo/{k}": v for k, v in self.algo.items()})
        out.update({f"ef/{k}": v for k, v in self.residuals.items()})
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ServerState:
        bits = arrays["bits_total"]
        return cls(
            round=int(arrays["round"]),
            params=np.array(arrays["params"], np.float32),
            broadcast=np.array(arrays["broadcast"], np.float32),
            algo={k[5:]: np.array(v) for k, v in arrays.items() if k.startswith("algo/")},
            residuals={
                int(k[3:]): np.array(v, np.float32)
                for k, v in arrays.items()
                if k.startswith("ef/")
            },
            uplink_bits_total=int(bits[0]),
            downlink_bits_total=int(bits[1]),
        )


class FederatedProcess:
    """Training rounds of ``algorithm`` on ``data`` with codecs on the links.

    Parameters
    ----------
    trainer, data, algorithm
        The model (with its frozen part, for FedPT), the clients, the server rule.
    uplink : Codec or None
        Compresses each client's update (trainable part, ``θ_k − θ_start``); ``None`` sends
        it as raw float32 (the ``identity`` codec), so bits are still real payload bytes.
    downlink : Codec or None
        Compresses the broadcast as the difference between the server's model and the
        model the clients hold; ``None`` broadcasts the model itself as float32.
    error_feedback : bool
        Keep each client's uplink residual (:class:`fedcodec.ErrorFeedback`).
    transport : callable(round, client, payload) -> payload, optional
        The network between a client and the server (tests use it to corrupt payloads).
    """

    def __init__(
        self,
        trainer: Trainer,
        data: FederatedData,
        algorithm: FedAvg,
        *,
        seed: int,
        local_epochs: int = 1,
        batch_size: int = 10,
        client_lr: float = 0.1,
        uplink: Codec | None = None,
        downlink: Codec | None = None,
        error_feedback: bool = False,
        transport: Transport | None = None,
        tolerate_client_errors: bool = False,
        model_init: np.ndarray,
    ) -> None:
        self.trainer, self.data, self.algorithm = trainer, data, algorithm
        self.seed = seed
        self.local_epochs, self.batch_size, self.client_lr = local_epochs, batch_size, client_lr
        self.uplink = uplink if uplink is not None else Identity()
        self.downlink = downlink
        self.error_feedback = ErrorFeedback(self.uplink) if error_feedback else None
        self.transport = transport
        self.tolerate_client_errors = tolerate_client_errors
        self.model_init = model_init
        self.idx = trainer.train_index
        self.layout = trainer.layout

    def init(self) -> ServerState:
        p = self.model_init.astype(np.float32, copy=True)
        return ServerState(0, p, p.copy(), self.algorithm.init_state(self.trainer.num_trainable))

    def sample_clients(self, round_: int, count: int) -> list[int]:
        rng = np.random.default_rng(derive_seed(self.seed, round_, -1, SAMPLE))
        k = len(self.data.clients)
        return sorted(int(c) for c in rng.choice(k, size=min(count, k), replace=False))

    def _broadcast(self, state: ServerState, round_: int, num_receivers: int) -> int:
        """Update ``state.broadcast`` to what the clients decode; returns downlink bits."""
        target = state.params[self.idx]
        if self.downlink is None:
            payload = Identity().encode_vector(target, layout=self.layout)
            state.broadcast[self.idx] = Identity().decode(payload, layout=self.layout)
        else:
            seed = derive_seed(self.seed, round_, -1, DOWNLINK)
            change = np.ascontiguousarray(target - state.broadcast[self.idx], np.float32)
            # one thread: the harness runs next to torch's own threads
            payload = self.downlink.encode_vector(change, layout=self.layout, seed=seed, threads=1)
            state.broadcast[self.idx] += self.downlink.decode(
                payload, seed=seed, layout=self.layout, threads=1
            )
        return 8 * len(payload) * num_receivers

    def apply(
        self, state: ServerState, clients: Sequence[int], *, keep_updates: bool = False
    ) -> tuple[ServerState, dict[str, Any]]:
        """Run one round with ``clients``; ``state`` is updated in place and returned."""
        t0 = time.perf_counter()
        round_ = state.round + 1
        down_bits = self._broadcast(state, round_, len(clients))
        start_full = state.broadcast.copy()
        start = start_full[self.idx]
        if self.error_feedback is not None:
            self.error_feedback.residuals = state.residuals  # type: ignore[assignment]
        deltas, weights, nmses, losses, bits_per_param = [], [], [], [], []
        dropped: list[dict[str, Any]] = []
        updates: dict[int, np.ndarray] = {}
        up_bits = 0
        for k in clients:
            cd = self.data.clients[k]
            stage = "train"
            try:
                new, loss = self.trainer.train(
                    start_full,
                    cd.train_x,
                    cd.train_y,
                    epochs=self.local_epochs,
                    batch_size=self.batch_size,
                    lr=self.client_lr,
                    seed=derive_seed(self.seed, round_, k, TRAIN),
                    prox=self.algorithm.prox(state.algo, k, start),
                )
                delta = np.ascontiguousarray(new - start, np.float32)
                stage = "encode"
                seed = derive_seed(self.seed, round_, k, UPLINK)
                # the codec sees the model's tensors (self.layout), not one flat vector
                if self.error_feedback is not None:
                    payload = self.error_feedback.encode_vector(
                        delta.copy(), key=k, layout=self.layout, seed=seed, threads=1
                    )
                else:
                    payload = self.uplink.encode_vector(
                        delta, layout=self.layout, seed=seed, threads=1
                    )
                if self.transport is not None:
                    stage = "transport"
                    payload = self.transport(round_, k, payload)
                up_bits += 8 * len(payload)
                stage = "decode"
                decoded = self.uplink.decode(
                    payload,
                    seed=seed,
                    out=np.empty(delta.shape, np.float32),
                    layout=self.layout,
                    threads=1,
                )
            except Exception as exc:
                # what the link does to a payload (a fault injected through the transport, a
                # payload that fails to decode) drops the client; an exception of the
                # training code or the encoder is an error, unless the user tolerates them
                if stage in ("train", "encode") and not self.tolerate_client_errors:
                    raise ClientError(round_, k, stage, exc) from exc
                log.warning("round %d: client %d dropped at %s: %s", round_, k, stage, exc)
                dropped.append(
                    {"client": k, "stage": stage, "error": f"{type(exc).__name__}: {exc}"}
                )
                continue
            self.algorithm.after_client(state.algo, k, decoded)
            energy = float(np.dot(delta.astype(np.float64), delta.astype(np.float64)))
            err = delta.astype(np.float64) - decoded
            nmses.append(float(np.dot(err, err)) / energy if energy > 0 else 0.0)
            bits_per_param.append(8 * len(payload) / max(delta.size, 1))
            deltas.append(decoded)
            weights.append(float(cd.num_train) if self.algorithm.weighted else 1.0)
            losses.append(loss)
            if keep_updates:
                updates[k] = delta
        if deltas:
            state.params[self.idx] = self.algorithm.server_update(
                state.algo, state.params[self.idx], start, deltas, weights
            )
        state.round = round_
        state.uplink_bits_total += up_bits
        state.downlink_bits_total += down_bits
        diag: dict[str, Any] = {
            "round": round_,
            "clients": list(clients),
            "dropped": dropped,
            "train_loss": float(np.mean(losses)) if losses else None,
            "uplink_bits": up_bits,
            "downlink_bits": down_bits,
            "uplink_bits_cum": state.uplink_bits_total,
            "downlink_bits_cum": state.downlink_bits_total,
            "bits_per_param": float(np.mean(bits_per_param)) if bits_per_param else None,
            "nmse_mean": float(np.mean(nmses)) if nmses else None,
            "nmse_max": float(np.max(nmses)) if nmses else None,
            "seconds": time.perf_counter() - t0,
        }
        if keep_updates:
            diag["updates"] = updates
        return state, diag
