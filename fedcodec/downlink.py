"""The downlink: the server's broadcast as the difference to the model each client holds.

Each round the server encodes one payload, the change from the model the clients held after
the previous broadcast to its current model, and applies the *decoded* change to that
reference, so every client that applies the same payloads holds exactly the server's
reference (float32 arithmetic in the same order on both sides: no drift). A client that
missed rounds gets the payloads of the rounds it missed (kept for ``history`` rounds), or
the full model (float32, the ``identity`` codec) where that is smaller, where the chain is
gone, or where the server does not know what it holds (a client dropped in a round, or one
the server never reached). Without a codec every client gets the full model every round.

The bytes a client receives are :attr:`DownlinkMessage.nbytes`: the harness and Flower's
engine count downlink bits the same way, as the sum over the round's clients.

Examples
--------
>>> import numpy as np
>>> from fedcodec import get_codec
>>> from fedcodec.downlink import Downlink, apply_downlink
>>> down = Downlink(get_codec({"id": "rdq", "bits_per_param": 4.0}), seed=0)
>>> server = np.zeros(1000, np.float32)          # the model every client holds (round 0)
>>> target = np.random.default_rng(0).normal(size=1000).astype(np.float32)
>>> down.advance(server, 1, target)              # round 1: server now holds the reference
>>> msg = down.message(client=7, round_=1)
>>> msg.base_round, len(msg.payloads)
(0, 1)
>>> client = apply_downlink(np.zeros(1000, np.float32), 0, msg, down.codec, seed=0)
>>> bool(np.array_equal(client, server))
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .codec import Codec
from .identity import Identity
from .layout import Layout
from .seeds import DOWNLINK, derive_seed

#: Rounds of downlink payloads the server keeps for clients that missed rounds.
HISTORY_ROUNDS = 16
#: ``held`` value of a client whose model the server does not know (it gets the full model).
UNKNOWN = -1


@dataclass
class DownlinkMessage:
    """What one client receives in one round.

    ``base_round``: the round of the model the chain applies to (the payloads of rounds
    ``base_round + 1 .. round``, in order), or ``None`` for the full model (one ``identity``
    payload of the trainable vector).
    """

    round: int
    base_round: int | None
    payloads: list[bytes]

    @property
    def nbytes(self) -> int:
        return sum(len(p) for p in self.payloads)


@dataclass
class Downlink:
    """The server side of the downlink (codec ``None``: the full model every round).

    ``held``: the round whose model each client holds (missing: ``default_held``; 0 means
    the initial model, which both sides derive from the shared seed; :data:`UNKNOWN` where
    the server cannot know it). ``recent``: the payloads of the last ``history`` rounds.
    """

    codec: Codec | None
    seed: int
    layout: Layout | None = None
    history: int = HISTORY_ROUNDS
    default_held: int = 0
    held: dict[int, int] = field(default_factory=dict)
    recent: dict[int, bytes] = field(default_factory=dict)
    _full: tuple[int, bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.history < 0:
            raise ValueError(f"history must be >= 0 rounds, got {self.history}")

    def advance(
        self, model: np.ndarray, round_: int, target: np.ndarray, index: np.ndarray | None = None
    ) -> None:
        """Round ``round_``'s broadcast: ``model[index]`` (the reference the clients hold)
        moves to ``target`` (exactly without a codec, by the decoded change with one)."""
        part = model if index is None else model[index]
        if self.codec is None:
            new = target.astype(np.float32)
        else:
            seed = derive_seed(self.seed, round_, -1, DOWNLINK)
            change = np.ascontiguousarray(target - part, np.float32)
            # one thread: the harness runs next to torch's own threads
            payload = self.codec.encode_vector(change, layout=self.layout, seed=seed, threads=1)
            new = part + self.codec.decode(payload, seed=seed, layout=self.layout, threads=1)
            self.recent[round_] = payload
            for r in [r for r in self.recent if r <= round_ - self.history]:
                del self.recent[r]
        if index is None:
            model[...] = new
        else:
            model[index] = new
        self._full = (round_, Identity().encode_vector(new, layout=self.layout))

    def reset(self, model: np.ndarray, round_: int, target: np.ndarray) -> None:
        """Start over at ``round_`` with ``model`` = ``target`` exactly: every client gets
        the full model (a server that does not know what its clients hold starts so)."""
        model[...] = target
        self.held.clear()
        self.recent.clear()
        self._full = (round_, Identity().encode_vector(model, layout=self.layout))

    def message(self, client: int, round_: int) -> DownlinkMessage:
        """What ``client`` receives in round ``round_`` (after :meth:`advance`)."""
        if self._full is None or self._full[0] != round_:
            raise ValueError(f"advance() the downlink to round {round_} before its messages")
        full = self._full[1]
        base = self.held.get(client, self.default_held)
        if self.codec is not None and 0 <= base < round_:
            rounds = range(base + 1, round_ + 1)
            if all(r in self.recent for r in rounds):
                chain = [self.recent[r] for r in rounds]
                if sum(len(p) for p in chain) < len(full):
                    return DownlinkMessage(round_, base, chain)
        return DownlinkMessage(round_, None, [full])

    def delivered(self, client: int, round_: int) -> None:
        """``client`` took part in ``round_``: it holds that round's model."""
        self.held[client] = round_

    def lost(self, client: int) -> None:
        """``client`` was dropped: what it holds is unknown (the full model next time)."""
        self.held[client] = UNKNOWN

    # -- checkpoints ------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        keys = np.array(sorted(self.held), np.int64)
        out = {
            "down/held": np.stack([keys, np.array([self.held[k] for k in keys], np.int64)])
            if len(keys)
            else np.zeros((2, 0), np.int64),
        }
        out.update({f"down/p{r}": np.frombuffer(p, np.uint8) for r, p in self.recent.items()})
        return out

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        held = arrays.get("down/held")
        if held is not None:
            self.held = {int(k): int(v) for k, v in zip(held[0], held[1], strict=True)}
        self.recent = {
            int(k[6:]): np.asarray(v, np.uint8).tobytes()
            for k, v in arrays.items()
            if k.startswith("down/p")
        }


def apply_downlink(
    held: np.ndarray | None,
    held_round: int,
    msg: DownlinkMessage,
    codec: Codec | None,
    *,
    seed: int,
    layout: Layout | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The client side: the model after ``msg`` from the model it holds (of ``held_round``).

    Raises ValueError where the chain does not start from what the client holds (the server
    then sends the full model next time) or a payload fails to decode.
    """
    if msg.base_round is None:
        if len(msg.payloads) != 1:
            raise ValueError("a full-model downlink message has exactly one payload")
        return Identity().decode(msg.payloads[0], layout=layout, out=out)
    if held is None or held_round != msg.base_round:
        raise ValueError(
            f"the downlink chain starts from round {msg.base_round}'s model but this client "
            f"holds round {held_round}'s"
        )
    if codec is None:
        raise ValueError("a downlink chain needs the downlink codec")
    if len(msg.payloads) != msg.round - msg.base_round:
        raise ValueError("the downlink chain has the wrong number of payloads")
    model = np.array(held, np.float32, copy=True) if out is None else out
    if out is not None:
        out[...] = held
    for r, payload in zip(range(msg.base_round + 1, msg.round + 1), msg.payloads, strict=True):
        s = derive_seed(seed, r, -1, DOWNLINK)
        model += codec.decode(payload, seed=s, layout=layout, threads=1)
    return model
