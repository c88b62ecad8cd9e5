"""Named training configurations, chosen by measurement: a codec and the server settings
it was measured with.

A preset is a config to copy: ``fedcodec presets`` prints each as JSON, ``fedcodec train
--preset NAME`` trains with it, and :func:`get_preset` gives it to Python callers (its
``codec`` goes to :func:`fedcodec.get_codec`, its ``train`` to
:class:`fedcodec.fl.TrainConfig`). Each names the benchmark suites its choice rests on
(``bench/bits_accuracy.py``; the figures are in docs/benchmarks.md).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PRESETS", "Preset", "get_preset"]


@dataclass(frozen=True)
class Preset:
    """A codec config (``{"id": ..., ...}``) and the :class:`~fedcodec.fl.TrainConfig`
    settings it was measured with (server optimizer and learning rate)."""

    name: str
    description: str
    codec: dict[str, Any]
    train: dict[str, Any] = field(default_factory=dict)
    evidence: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: name, description, codec, train, evidence."""
        return {
            "name": self.name,
            "description": self.description,
            "codec": dict(self.codec),
            "train": dict(self.train),
            "evidence": list(self.evidence),
        }


#: every preset by name
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="tenth-bit",
            description=(
                "training at a tenth of a bit per parameter (0.105 bit/param mean uplink): "
                "rdq_unbiased (rotated nearest rounding, unbiased per rotation block, bits "
                "allocated over blocks by their RMS), the update rotated as one vector, each "
                "client's rate in proportion to its training examples (fedcodec.rate_share; "
                "the mean kept), a cosine server learning rate from 2.0 over the run's "
                "rounds, no error feedback"
            ),
            codec={"id": "rdq_unbiased", "bits_per_param": 0.105, "per_tensor": False},
            train={
                "server_optimizer": "sgd",
                "server_lr": 2.0,
                "server_lr_schedule": "cosine",
                "uplink_rate_by_examples": True,
            },
            evidence=(
                "bench/results/bits_accuracy_lowbit-flat-cosine-105-20-shakespeare-s0.json",
                "bench/results/bits_accuracy_lowbit-flat-cosine-105-20-shakespeare-s1.json",
                "bench/results/bits_accuracy_lowbit-flat-cosine-105-20-fmnist-s0.json",
            ),
        ),
    )
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a ``ValueError`` names the closest one.

    Examples
    --------
    >>> from fedcodec.presets import get_preset
    >>> import fedcodec
    >>> preset = get_preset("tenth-bit")
    >>> fedcodec.get_codec(preset.codec).codec_id
    'rdq_unbiased'
    """
    if name in PRESETS:
        return PRESETS[name]
    close = difflib.get_close_matches(name, PRESETS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown preset {name!r}{hint}; presets: {', '.join(PRESETS)}")
