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

from .. import rate_share
from ..codec import Codec, get_codec
from ..downlink import HISTORY_ROUNDS, Downlink
from ..error_feedback import ErrorFeedback
from ..identity import Identity
from ..seeds import SAMPLE, TRAIN, UPLINK, derive_seed
from .algorithms import FedAvg
from .client import Prox, Trainer
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
    ``residuals``: uplink error-feedback memory per client. ``held`` and ``recent``: the
    downlink's bookkeeping (the round whose model each client holds, the last rounds'
    payloads: :class:`fedcodec.downlink.Downlink`).
    """

    round: int
    params: np.ndarray
    broadcast: np.ndarray
    algo: dict[str, np.ndarray] = field(default_factory=dict)
    residuals: dict[int, np.ndarray] = field(default_factory=dict)
    held: dict[int, int] = field(default_factory=dict)
    recent: dict[int, bytes] = field(default_factory=dict)
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
        down = Downlink(None, 0, held=self.held, recent=self.recent)
        out.update(down.to_arrays())
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ServerState:
        bits = arrays["bits_total"]
        down = Downlink(None, 0)
        down.load_arrays(arrays)
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
            held=down.held,
            recent=down.recent,
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
        model the clients hold (a client that missed rounds gets their payloads, up to
        ``downlink_history`` rounds, or the full model where that is smaller:
        :mod:`fedcodec.downlink`); ``None`` broadcasts the model itself as float32.
    error_feedback : bool
        Keep each client's uplink residual (:class:`fedcodec.ErrorFeedback`).
    uplink_rate_by_examples : bool
        Give client k the uplink codec's rate times its share of the examples
        (:mod:`fedcodec.rate_share`: ``clip(n_k / reference, 0.2, 10)``, the reference
        chosen so that the mean share over all clients is 1); the codec needs a rate
        target (``bits_per_param``, EDEN's ``bits``).
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
        uplink_rate_by_examples: bool = False,
        transport: Transport | None = None,
        tolerate_client_errors: bool = False,
        model_init: np.ndarray,
        downlink_history: int = HISTORY_ROUNDS,
    ) -> None:
        self.trainer, self.data, self.algorithm = trainer, data, algorithm
        self.seed = seed
        self.local_epochs, self.batch_size, self.client_lr = local_epochs, batch_size, client_lr
        self.uplink = uplink if uplink is not None else Identity()
        self.downlink = downlink
        self.error_feedback = ErrorFeedback(self.uplink) if error_feedback else None
        #: client -> its uplink codec, where rates follow the examples
        self.uplinks: dict[int, Codec] = {}
        if uplink_rate_by_examples:
            if error_feedback:
                raise ValueError("uplink_rate_by_examples does not combine with error_feedback")
            config = self.uplink.get_config()
            sizes = [c.num_train for c in data.clients]
            reference = rate_share.reference_examples(sizes)
            self.uplinks = {
                k: get_codec(
                    rate_share.scaled_config(config, rate_share.example_share(n, reference))
                )
                for k, n in enumerate(sizes)
            }
        self.transport = transport
        self.tolerate_client_errors = tolerate_client_errors
        self.model_init = model_init
        self.idx = trainer.train_index
        self.layout = trainer.layout
        self.down = Downlink(downlink, seed, layout=self.layout, history=downlink_history)

    def init(self) -> ServerState:
        p = self.model_init.astype(np.float32, copy=True)
        return ServerState(0, p, p.copy(), self.algorithm.init_state(self.trainer.num_trainable))

    def sample_clients(self, round_: int, count: int) -> list[int]:
        rng = np.random.default_rng(derive_seed(self.seed, round_, -1, SAMPLE))
        k = len(self.data.clients)
        return sorted(int(c) for c in rng.choice(k, size=min(count, k), replace=False))

    def broadcast(self, state: ServerState, round_: int, clients: Sequence[int]) -> int:
        """Round ``round_``'s downlink: ``state.broadcast`` becomes what the clients decode;
        returns the downlink bits, the sum of what each of ``clients`` receives (the payloads
        of the rounds it missed or the full model: :mod:`fedcodec.downlink`)."""
        self.down.held, self.down.recent = state.held, state.recent
        self.down.advance(state.broadcast, round_, state.params[self.idx], self.idx)
        return sum(8 * self.down.message(k, round_).nbytes for k in clients)

    def local_update(
        self,
        k: int,
        round_: int,
        start_full: np.ndarray,
        *,
        prox: Prox | None,
        feedback: ErrorFeedback | None,
    ) -> tuple[bytes, np.ndarray, float]:
        """Client ``k``'s part of a round: train from ``start_full`` (the model it holds),
        encode ``θ_k − θ_start``; returns (payload, update, mean loss). The harness and
        Flower's engine both call it. Raises :class:`StageError` (``train`` or ``encode``)."""
        stage = "train"
        try:
            cd = self.data.clients[k]
            new, loss = self.trainer.train(
                start_full,
                cd.train_x,
                cd.train_y,
                epochs=self.local_epochs,
                batch_size=self.batch_size,
                lr=self.client_lr,
                seed=derive_seed(self.seed, round_, k, TRAIN),
                prox=prox,
            )
            delta = np.ascontiguousarray(new - start_full[self.idx], np.float32)
            stage = "encode"
            seed = derive_seed(self.seed, round_, k, UPLINK)
            # the codec sees the model's tensors (self.layout), not one flat vector
            if feedback is not None:
                payload = feedback.encode_vector(
                    delta.copy(), key=k, layout=self.layout, seed=seed, threads=1
                )
            else:
                codec = self.uplinks.get(k, self.uplink)
                payload = codec.encode_vector(delta, layout=self.layout, seed=seed, threads=1)
        except Exception as exc:
            raise StageError(stage, exc) from exc
        return payload, delta, loss

    def decode_update(self, k: int, round_: int, payload: bytes, size: int) -> np.ndarray:
        """The server's decoding of client ``k``'s payload of round ``round_``."""
        return self.uplink.decode(
            payload,
            seed=derive_seed(self.seed, round_, k, UPLINK),
            out=np.empty(size, np.float32),
            layout=self.layout,
            threads=1,
        )

    def apply(
        self, state: ServerState, clients: Sequence[int], *, keep_updates: bool = False
    ) -> tuple[ServerState, dict[str, Any]]:
        """Run one round with ``clients``; ``state`` is updated in place and returned."""
        t0 = time.perf_counter()
        round_ = state.round + 1
        down_bits = self.broadcast(state, round_, clients)
        start_full = state.broadcast.copy()
        start = start_full[self.idx]
        if self.error_feedback is not None:
            self.error_feedback.residuals = state.residuals  # type: ignore[assignment]
        accepted: list[Accepted] = []
        dropped: list[dict[str, Any]] = []
        updates: dict[int, np.ndarray] = {}
        up_bits = 0
        for k in clients:
            stage = "train"
            try:
                try:
                    payload, delta, loss = self.local_update(
                        k,
                        round_,
                        start_full,
                        prox=self.algorithm.prox(state.algo, k, start),
                        feedback=self.error_feedback,
                    )
                except StageError as err:
                    stage = err.stage
                    raise err.__cause__ from None  # type: ignore[misc]
                if self.transport is not None:
                    stage = "transport"
                    payload = self.transport(round_, k, payload)
                up_bits += 8 * len(payload)
                stage = "decode"
                decoded = self.decode_update(k, round_, payload, delta.size)
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
            accepted.append(
                Accepted(
                    k,
                    decoded,
                    weight=float(self.data.clients[k].num_train),
                    loss=loss,
                    nmse=update_nmse(delta, decoded),
                    payload_bytes=len(payload),
                )
            )
            if keep_updates:
                updates[k] = delta
        diag = self.finish_round(
            state, round_, clients, accepted, dropped, up_bits=up_bits, down_bits=down_bits
        )
        diag["seconds"] = time.perf_counter() - t0
        if keep_updates:
            diag["updates"] = updates
        return state, diag

    def finish_round(
        self,
        state: ServerState,
        round_: int,
        clients: Sequence[int],
        accepted: Sequence[Accepted],
        dropped: list[dict[str, Any]],
        *,
        up_bits: int,
        down_bits: int,
    ) -> dict[str, Any]:
        """The server's end of round ``round_``: the server update from the accepted
        clients' decoded updates (in the order given: ascending client), the downlink's
        bookkeeping, the totals; returns the round's diagnostics (without ``seconds``)."""
        start = state.broadcast[self.idx]
        if accepted:
            state.params[self.idx] = self.algorithm.server_update(
                state.algo,
                state.params[self.idx],
                start,
                [a.decoded for a in accepted],
                [a.weight if self.algorithm.weighted else 1.0 for a in accepted],
                round_=round_,
            )
        for k in clients:
            self.down.delivered(k, round_)
        for d in dropped:
            self.down.lost(int(d["client"]))
        state.round = round_
        state.uplink_bits_total += up_bits
        state.downlink_bits_total += down_bits
        bpp = [8 * a.payload_bytes / max(a.decoded.size, 1) for a in accepted]
        nmses = [a.nmse for a in accepted]
        return {
            "round": round_,
            "clients": list(clients),
            "dropped": dropped,
            "train_loss": float(np.mean([a.loss for a in accepted])) if accepted else None,
            "uplink_bits": up_bits,
            "downlink_bits": down_bits,
            "uplink_bits_cum": state.uplink_bits_total,
            "downlink_bits_cum": state.downlink_bits_total,
            "bits_per_param": float(np.mean(bpp)) if bpp else None,
            "nmse_mean": float(np.mean(nmses)) if nmses else None,
            "nmse_max": float(np.max(nmses)) if nmses else None,
        }


class StageError(Exception):
    """A client's step failed at ``stage`` (``train`` or ``encode``); the cause is chained."""

    def __init__(self, stage: str, exc: BaseException) -> None:
        super().__init__(f"{stage} failed: {type(exc).__name__}: {exc}")
        self.stage = stage


@dataclass
class Accepted:
    """A client's update the server received and decoded."""

    client: int
    decoded: np.ndarray
    weight: float
    loss: float
    nmse: float
    payload_bytes: int


def update_nmse(delta: np.ndarray, decoded: np.ndarray) -> float:
    """‖Δ − Δ̂‖² / ‖Δ‖² in float64 (0 for a zero update)."""
    d = delta.astype(np.float64)
    energy = float(np.dot(d, d))
    err = d - decoded
    return float(np.dot(err, err)) / energy if energy > 0 else 0.0
