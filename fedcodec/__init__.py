"""fedcodec: make federated-learning model updates small.

Examples
--------
>>> import numpy as np, fedcodec
>>> update = np.random.default_rng(0).standard_normal(10_000).astype(np.float32)
>>> codec = fedcodec.get_codec({"id": "rdq", "bits_per_param": 2.0})
>>> payload = codec.encode(update)
>>> fedcodec.decode(payload).shape
(10000,)
"""

from __future__ import annotations

from . import _moved, kernels
from .bf16 import BF16
from .codec import (
    Codec,
    available_codecs,
    decode,
    get_codec,
    register_codec,
    registered_codecs,
)
from .container import FORMAT_VERSION, MAX_ELEMENTS
from .drive import Drive
from .eden import Eden
from .error_feedback import ErrorFeedback
from .errors import DecodeError, UnknownCodecError
from .fp16 import FP16
from .identity import Identity
from .int8 import Int8
from .layout import Layout, flatten, unflatten
from .measure import measure
from .qsgd import QSGD
from .rdq import RDQ
from .rdq_unbiased import RDQUnbiased
from .threelc import ThreeLC
from .topk import TopK

__version__ = "0.1.0"

_moved.install()  # old names of the modules moved to fedcodec.tools keep importing

__all__ = [
    "BF16",
    "FORMAT_VERSION",
    "FP16",
    "MAX_ELEMENTS",
    "QSGD",
    "RDQ",
    "Codec",
    "DecodeError",
    "Drive",
    "Eden",
    "ErrorFeedback",
    "Identity",
    "Int8",
    "Layout",
    "RDQUnbiased",
    "ThreeLC",
    "TopK",
    "UnknownCodecError",
    "available_codecs",
    "decode",
    "flatten",
    "get_codec",
    "kernels",
    "measure",
    "register_codec",
    "registered_codecs",
    "unflatten",
]
