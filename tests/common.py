"""Shared checkers, in the spirit of numcodecs' ``tests/common.py``: each codec's test
file is a short spec that calls these."""

from __future__ import annotations

import json
import math
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fedcodec
from fedcodec import DecodeError, _rotated, container
from fedcodec.container import unpack
from fedcodec.eden import CENTROIDS

FIXTURES = Path(__file__).parent / "fixtures"


def check_encode_decode(
    codec: fedcodec.Codec, x: np.ndarray, *, seed: int | None = 0
) -> np.ndarray:
    """Round trip an array: shape and dtype kept, bits = 8·len(payload), the error within
    the codec's bound (:func:`error_bound`)."""
    payload = codec.encode(x, seed=seed)
    assert isinstance(payload, bytes)
    out = codec.decode(payload, seed=seed)
    assert out.shape == x.shape
    assert out.dtype == x.dtype
    assert np.all(np.isfinite(out))
    m = fedcodec.measure(codec, x, seed=seed, payload=payload)
    assert m["bits"] == 8 * len(payload)
    assert_error_bounded(codec.get_config(), x, out, payload, repr(codec))
    if x.size:
        err = out.astype(np.float64).reshape(-1) - x.astype(np.float64).reshape(-1)
        assert np.isclose(m["mse"], float(np.dot(err, err)) / x.size, rtol=1e-6, atol=0)
    # decoding into a caller's buffer gives the same values
    buf = np.empty(x.shape, dtype=np.float32)
    codec.decode(payload, seed=seed, out=buf)
    np.testing.assert_array_equal(buf, out.astype(np.float32))
    return out


def check_mapping_round_trip(
    codec: fedcodec.Codec, update: dict[str, np.ndarray], seed: int = 0
) -> None:
    payload = codec.encode(update, seed=seed)
    _, layout = fedcodec.flatten(update)
    flat = codec.decode(payload, seed=seed, layout=layout)
    restored = fedcodec.unflatten(flat, layout)
    assert list(restored) == list(update)
    for name, value in update.items():
        assert restored[name].shape == value.shape and restored[name].dtype == value.dtype
    other = dict(update)
    first = next(iter(other))
    other[first + "_renamed"] = other.pop(first)
    _, wrong = fedcodec.flatten(other)
    try:
        codec.decode(payload, seed=seed, layout=wrong)
    except DecodeError as exc:
        assert "layout" in str(exc)
    else:
        raise AssertionError("decoding against another layout must raise DecodeError")


def check_torch_round_trip(codec: fedcodec.Codec, x: np.ndarray, seed: int = 0) -> None:
    import torch

    t = torch.from_numpy(x.copy())
    payload = codec.encode(t, seed=seed)
    assert payload == codec.encode(x, seed=seed)


def check_config(codec: fedcodec.Codec) -> None:
    config = codec.get_config()
    text = json.dumps(config)
    again = fedcodec.get_codec(json.loads(text))
    assert again == codec
    assert again.get_config() == config
    assert type(codec).from_config(config) == codec


def check_repr(codec: fedcodec.Codec, expected: str) -> None:
    assert repr(codec) == expected


def check_backwards_compatibility(
    name: str, codec: fedcodec.Codec, x: np.ndarray, seed: int
) -> None:
    """Decode the stored payload and compare with the stored decoded values (a format
    change fails), then re-encode: the encoders are deterministic (rate searches included:
    no threads, no fastmath, the same arithmetic on both sides), so the payload must come
    back byte for byte. An encoder that improves changes the bytes on purpose: regenerate
    the fixtures with ``tests/make_fixtures.py`` and say what it gained in the commit."""
    payload = (FIXTURES / f"{name}.bin").read_bytes()
    expected = np.load(FIXTURES / f"{name}.decoded.npy")
    stored_input = np.load(FIXTURES / f"{name}.input.npy")
    np.testing.assert_array_equal(stored_input, x)
    np.testing.assert_array_equal(codec.decode(payload, seed=seed), expected)
    np.testing.assert_array_equal(fedcodec.decode(payload, seed=seed), expected)
    again = codec.encode(x, seed=seed)
    assert again == payload, f"{name}: the bitstream changed ({len(payload)} -> {len(again)} B)"


def with_crc(data: bytes) -> bytes:
    """Replace the trailing CRC so that a mutated payload passes the checksum."""
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


def body_offset(payload: bytes) -> int:
    env = unpack(payload)
    return len(payload) - 4 - len(env.body)


def expect_decode_error(codec: fedcodec.Codec, data: bytes, seed: Any = 0) -> None:
    """Decoding hostile bytes may only succeed (with finite values) or raise DecodeError;
    nothing else."""
    try:
        out = codec.decode(data, seed=seed)
    except DecodeError:
        return
    assert isinstance(out, np.ndarray)
    assert np.isfinite(out).all()  # scanned, or finite by the codec's construction


# -- error bounds ----------------------------------------------------------------------


def rdq_step(payload: bytes) -> float:
    params = container.unpack(payload).params
    return float(struct.unpack("<f", params[1:5])[0])


def error_bound(config: dict[str, Any], x32: np.ndarray, payload: bytes) -> float:
    """An upper bound of ||decoded − x||₂ in the float32 domain (before the output dtype),
    derived from the codec's construction for every input, not measured."""
    n = x32.size
    a = np.abs(x32.astype(np.float64))
    norm = float(np.sqrt(np.sum(a * a)))
    max_abs = float(a.max()) if n else 0.0
    cid = config["id"]
    codec = fedcodec.get_codec(config)
    # float32 arithmetic in a reconstruction: a relative rounding per element
    arith = 2.0**-22 * norm + math.sqrt(n) * 2.0**-148
    rotation = 2.0**-16 * norm + math.sqrt(n) * 2.0**-119  # a rotation's float32 rounding
    if cid == "identity":
        return 0.0
    if cid == "fp16":  # nearest float16: half a unit in the last place, or of a subnormal
        return float(np.sqrt(np.sum((2.0**-11 * a + 2.0**-25) ** 2)))
    if cid == "bf16":
        # (values within 0.4 % of float32's max saturate to bfloat16's: within 2**-8 too)
        return float(np.sqrt(np.sum((2.0**-8 * a + 2.0**-134) ** 2))) * 1.0001
    if cid == "int8":  # half a level of (max - min) / 255, plus the scale's rounding
        width = float(x32.max()) - float(x32.min()) if n else 0.0
        return math.sqrt(n) * (width / 510 * 1.0001 + 2.0**-149) + arith
    if cid == "rdq":
        step = rdq_step(payload)
        # |x - x̂| per element, in steps: nearest (any dead zone, reconstruction inside its
        # bin to 1/256) 1 + 1/256; stochastic 1; subtractive dither 1/2
        c = {"nearest": 1.0 + 1.0 / 256, "stochastic": 1.0, "dither": 0.5}[codec.rounding]
        if codec.levels == "rdoq":
            # a level of 0 wins over floor(v) >= 1 only if v² - (v - floor(v))² is below
            # RDOQ_LAMBDA × the level's bits (at most ~215: 14 unary bits of <= 10 bits
            # each, a 63-bit escape, sign and significance): v <= sqrt(1 + 0.06 · 215) < 4;
            # otherwise within a step of its level, whose reconstruction is within a step
            c = 4.0
        bound = math.sqrt(n) * c * step * (1 + 2.0**-20) + arith
        return bound + (rotation if codec.rotate else 0.0)
    if cid == "qsgd":  # |x - x̂| <= bucket norm / s, per element
        bucket = codec._bucket(n)
        total = 0.0
        for start in range(0, n, bucket):
            part = a[start : start + bucket]
            nb = float(part.max()) if codec.norm == "max" else float(np.sqrt(np.sum(part * part)))
            total += part.size * (nb / codec.num_levels) ** 2
        return math.sqrt(total) * 1.0001 + arith
    if cid == "threelc":  # t = round(x / M) with |x| <= M: |x - x̂| <= M / 2
        return math.sqrt(n) * max_abs * codec.sparsity / 2 * 1.0001 + arith
    if cid == "topk":  # the n - k smallest magnitudes are dropped; kept values rounded
        k = codec.num_kept(n)
        order = np.sort(a)
        dropped = float(np.sum(order[: n - k] ** 2))
        kept = order[n - k :]
        if codec.value_dtype == "float16":
            dropped += float(np.sum((2.0**-11 * kept + 2.0**-25) ** 2))
        return math.sqrt(dropped) * 1.0001 + arith
    if cid in ("drive", "eden"):
        # per rotation block b of d elements: DRIVE unbiased ||e||² <= (d - 1)||x||²
        # (||Rx||₁ >= ||x||₂), DRIVE mse ||e||² <= ||x||²; EDEN ||e||² <= d (c_max/c_min)² ||x||²
        total = 0.0
        for start, stop in _rotated.blocks(n):
            energy = float(np.sum(a[start:stop] ** 2))
            d = stop - start
            if cid == "eden" and codec.bits < 1:  # ‖x̂‖ capped at √(d/b)‖x‖ per block
                factor = (1 + math.sqrt(d / codec.bits)) ** 2
            elif cid == "eden":  # every coordinate sent; ⌈b⌉ bits have the widest spread
                cents = CENTROIDS[math.ceil(codec.bits)]
                factor = d * (cents[-1] / cents[0]) ** 2
            else:
                factor = max(d - 1, 1) if codec.scale == "unbiased" else 1.0
            total += factor * energy
        return math.sqrt(total) * 1.001 + rotation + arith
    if cid == "rdq_unbiased":
        # per rotation block of d elements, x̂ = s q with <y, x̂> = ‖y‖²: ‖x̂‖² <=
        # (d + ((1 + o) / (1 - o))²) ‖y‖² (o: the rounding offset; a block's kept level
        # alone gives d), so ‖e‖² = ‖x̂‖² - ‖y‖² <= (d - 1 + ((1 + o) / (1 - o))²) ‖y‖²;
        # the scale's 16-bit code adds 2**-11 relative
        o = codec.rounding_offset
        total = 0.0
        for start, stop in _rotated.blocks(n):
            energy = float(np.sum(a[start:stop] ** 2))
            total += (stop - start - 1 + ((1 + o) / (1 - o)) ** 2) * energy
        return math.sqrt(total) * (1 + 2.0**-10) + rotation + arith
    raise AssertionError(f"no error bound written down for codec {cid!r}: add one")


def assert_error_bounded(
    config: dict[str, Any], x: np.ndarray, y: np.ndarray, payload: bytes, where: str
) -> None:
    """||y − x||₂ within :func:`error_bound`, plus the rounding of the input to float32 and
    of the output to its dtype (float16: 2**-11 relative, 2**-25 absolute)."""
    with np.errstate(over="ignore"):
        x32 = x.astype(np.float32).reshape(-1)
    x64 = x.astype(np.float64).reshape(-1)
    y64 = y.astype(np.float64).reshape(-1)
    bound = error_bound(config, x32, payload)
    rel = 2.0**-10 if y.dtype == np.float16 else 2.0**-23
    tiny = 2.0**-24 if y.dtype == np.float16 else 2.0**-149
    slack = float(np.linalg.norm(x64 - x32.astype(np.float64)))
    slack += float(np.linalg.norm(rel * np.abs(x64) + tiny)) + rel * bound
    err = float(np.linalg.norm(y64 - x64))
    assert err <= bound + slack, f"error {err:.4g} > bound {bound:.4g} + {slack:.3g} on {where}"


def count_refused_bodies(decode_body: Any, body: bytes, flips: int = 300) -> int:
    """Every truncation of ``body`` and ``body`` with a byte more must raise
    ``DecodeError`` from ``decode_body(bytes) -> int levels``; of ``flips`` copies with one
    bit flipped, returns how many were refused (the others must decode to levels within
    2**30)."""
    for cut in range(len(body)):
        with pytest.raises(DecodeError):
            decode_body(body[:cut])
    with pytest.raises(DecodeError):
        decode_body(body + b"\0")
    rng = np.random.default_rng(0)
    refused = 0
    for _ in range(flips):
        bad = bytearray(body)
        bad[rng.integers(len(bad))] ^= 1 << int(rng.integers(8))
        try:
            back = decode_body(bytes(bad))
        except DecodeError:
            refused += 1
        else:
            assert np.abs(back.astype(np.int64)).max() <= 2**30
    return refused
