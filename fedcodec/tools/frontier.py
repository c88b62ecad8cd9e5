"""Bitrate–distortion frontiers of every codec on real client updates, with the bound.

:func:`frontier` sweeps each codec's rate parameter over a set of updates and records,
per update and config, bits/param from the real payload, NMSE, encode and decode seconds;
it adds the Shannon bound of the updates' pooled value distribution
(:class:`fedcodec.tools.rd_bound.RDBound`), each codec's ratio to it, and how consistent one
codec's frontier is across clients and rounds. The result is one JSON document (schema
``fedcodec.frontier/1``, ``docs/cli.md``), written with a CSV and plots by
``fedcodec frontier``.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> updates = {f"r1_c{k}": rng.laplace(size=20_000).astype(np.float32) for k in range(3)}
>>> doc = frontier(updates, [{"id": "rdq", "sweep": {"bits_per_param": [1.0, 2.0]}}])
>>> [round(c["bits_per_param"], 1) for c in doc["curves"]]
[1.0, 2.0]
>>> all(1.0 <= c["ratio_to_bound"] < 1.3 for c in doc["curves"])
True
"""

from __future__ import annotations

import itertools
import json
import math
import platform
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..codec import get_codec
from ..coders import ctx as ctx_coder
from ..framing import _tensors
from ..layout import Layout, unflatten
from ..measure import measure
from .rd_bound import RDBound

SCHEMA = "fedcodec.frontier/1"
TABLE_NMSE = (0.01, 0.05, 0.2, 0.4)

# each codec's rate parameter and the values swept by default
DEFAULT_SWEEPS: dict[str, dict[str, Any]] = {
    "rdq": {"sweep": {"bits_per_param": [0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0]}},
    "topk": {"sweep": {"fraction": [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5]}},
    "qsgd": {"bucket_size": 512, "sweep": {"num_levels": [1, 2, 4, 8, 16, 32, 64, 128]}},
    "drive": {"sweep": {"scale": ["unbiased", "mse"]}},
    "eden": {"sweep": {"bits": [0.1, 0.25, 0.5, 1, 2, 3, 4]}},
    "threelc": {"sweep": {"sparsity": [1.0, 1.5, 1.9]}},
    "int8": {},
    "fp16": {},
    "bf16": {},
    "identity": {},
}
DEFAULT_CODECS = ("rdq", "topk", "qsgd", "drive", "eden", "threelc", "fp16")


def expand(specs: Sequence[Mapping[str, Any] | str]) -> list[dict[str, Any]]:
    """Codec configs from specs: an id (its default sweep), or a config whose optional
    ``"sweep": {param: [values...]}`` gives one config per value (product over params)."""
    return [config for config, _ in expand_series(specs)]


def expand_series(specs: Sequence[Mapping[str, Any] | str]) -> list[tuple[dict[str, Any], str]]:
    """:func:`expand`, each config with its series: the label of its spec without the
    sweep (one curve per series)."""
    out: list[tuple[dict[str, Any], str]] = []
    for spec in specs:
        if isinstance(spec, str):
            if spec not in DEFAULT_SWEEPS:
                raise ValueError(
                    f"no default sweep for codec {spec!r}; known: {', '.join(DEFAULT_SWEEPS)}; "
                    'or pass a JSON config like {"id": "rdq", "sweep": {"bits_per_param": [1, 2]}}'
                )
            spec = {"id": spec, **DEFAULT_SWEEPS[spec]}
        spec = dict(spec)
        sweep = spec.pop("sweep", {}) or {}
        if not isinstance(sweep, Mapping) or not all(
            isinstance(v, list) and v for v in sweep.values()
        ):
            raise ValueError(f"sweep must map parameter names to non-empty lists, got {sweep!r}")
        names = list(sweep)
        series = label({k: v for k, v in spec.items() if k not in names})
        for values in itertools.product(*(sweep[n] for n in names)):
            config = {**spec, **dict(zip(names, values, strict=True))}
            get_codec(config)  # fail early with the codec's own message
            out.append((config, series))
    return out


def parse_codecs(text: str) -> list[dict[str, Any] | str]:
    """``--codecs``: comma-separated ids (default sweeps) or a JSON list of specs; the specs,
    checked (each config they expand to is built once)."""
    text = text.strip()
    specs: list[dict[str, Any] | str]
    if text.startswith("["):
        specs = json.loads(text)
        if not isinstance(specs, list):
            raise ValueError("--codecs JSON must be a list of configs")
    else:
        specs = [s.strip() for s in text.split(",") if s.strip()]
    expand(specs)
    return specs


def label(config: Mapping[str, Any]) -> str:
    rest = ", ".join(f"{k}={v}" for k, v in config.items() if k != "id")
    return f"{config['id']}({rest})" if rest else str(config["id"])


_KEY = re.compile(r"^r(\d+)_c(\d+)$")


def load_updates(path: str | Path) -> dict[str, np.ndarray]:
    """Updates from an ``.npz`` file or a harness run directory (its ``updates.npz``)."""
    p = Path(path)
    if p.is_dir():
        p = p / "updates.npz"
        if not p.exists():
            raise FileNotFoundError(
                f"{p} not found: run the harness with --save-updates N to keep client updates"
            )
    with np.load(p) as z:
        updates = {k: np.asarray(z[k], dtype=np.float32).reshape(-1) for k in z.files}
    if not updates:
        raise ValueError(f"{p} holds no arrays")
    for k, v in updates.items():
        if not np.all(np.isfinite(v)):
            raise ValueError(f"update {k!r} in {p} holds NaN or Inf")
    return updates


def load_layout(path: str | Path) -> Layout | None:
    """The layout of a harness run's updates (its ``layout.json``), or of a ``.json`` file;
    None for a run without one."""
    p = Path(path)
    if p.is_dir():
        p = p / "layout.json"
        if not p.exists():
            return None
    return Layout.from_json(json.loads(p.read_text()))


def _round_client(key: str) -> tuple[int | None, int | None]:
    m = _KEY.match(key)
    return (int(m.group(1)), int(m.group(2))) if m else (None, None)


def frontier(
    updates: Mapping[str, np.ndarray],
    specs: Sequence[Mapping[str, Any] | str] = DEFAULT_CODECS,
    *,
    seed: int = 0,
    name: str = "frontier",
    source: Mapping[str, Any] | None = None,
    bound: bool = True,
    consistency_codec: str = "rdq",
    layout: Layout | None = None,
) -> dict[str, Any]:
    """Sweep ``specs`` over ``updates`` and return the ``fedcodec.frontier/1`` document.

    With the model's ``layout`` (the flat updates' tensors), codecs see the updates as the
    state dicts they are (RDQ's context coder codes tensor by tensor). Every RDQ point also
    gets ``context_bits_per_param``: the empirical conditional entropy of its levels given
    the context coder's contexts (:func:`fedcodec.coders.ctx.context_entropy_bits`), what
    an ideal coder with those contexts would spend."""
    expanded = expand_series(specs)
    configs = [config for config, _ in expanded]
    series_of = [series for _, series in expanded]
    keys = sorted(updates, key=lambda k: (_round_client(k)[0] or 0, _round_client(k)[1] or 0, k))
    points: list[dict[str, Any]] = []
    for ci, config in enumerate(configs):
        codec = get_codec(config)
        codec.decode(codec.encode(np.linspace(-1, 1, 64, dtype=np.float32), seed=1), seed=1)
        for ui, key in enumerate(keys):
            x = np.ascontiguousarray(updates[key], dtype=np.float32)
            shaped = layout is not None and layout.size == x.size
            update: Any = unflatten(x, layout) if shaped and layout is not None else x
            s = seed * 1_000_003 + ui
            t0 = time.perf_counter()
            payload = codec.encode(update, seed=s)
            encode_s = time.perf_counter() - t0
            m = measure(codec, update, seed=s, payload=payload)
            r, c = _round_client(key)
            point = {
                "update": key,
                "round": r,
                "client": c,
                "config": ci,
                "codec": config["id"],
                "params": int(x.size),
                "bits": int(m["bits"]),
                "bits_per_param": m["bits_per_param"],
                "nmse": m["nmse"],
                "encode_s": encode_s,
                "decode_s": m["decode_s"],
            }
            if config["id"] == "rdq":
                point["context_bits_per_param"] = _context_bits(
                    codec, payload, s, layout if shaped else None, x.size
                )
            points.append(point)
    rd = None
    if bound:
        pooled = np.concatenate([_normalized(updates[k]) for k in keys])
        rd = RDBound.fit(pooled)
    curves = []
    for ci, config in enumerate(configs):
        pts = [p for p in points if p["config"] == ci]
        bpp = float(np.mean([p["bits_per_param"] for p in pts]))
        nmse = float(np.mean([p["nmse"] for p in pts]))
        b = float(rd.bits_at(nmse)) if rd is not None and nmse > 0 else math.nan
        curve = {
            "config": ci,
            "codec": config["id"],
            "series": series_of[ci],
            "label": label(config),
            "bits_per_param": bpp,
            "nmse": nmse,
            "bound_bits_per_param": _num(b),
            "ratio_to_bound": _num(bpp / b) if b > 0 else None,
            "encode_mparams_per_s": _rate(pts, "encode_s"),
            "decode_mparams_per_s": _rate(pts, "decode_s"),
        }
        if all("context_bits_per_param" in p for p in pts):
            ctx_bpp = float(np.mean([p["context_bits_per_param"] for p in pts]))
            curve["context_bits_per_param"] = ctx_bpp
            curve["context_ratio_to_bound"] = _num(ctx_bpp / b) if b > 0 else None
        curves.append(curve)
    table = []
    for series in dict.fromkeys(series_of):
        cs = sorted((c for c in curves if c["series"] == series), key=lambda c: c["nmse"])
        with_ctx = all("context_bits_per_param" in c for c in cs)
        for target in TABLE_NMSE:
            v = _interp_bits(cs, target)
            b = float(rd.bits_at(target)) if rd is not None else math.nan
            row = {
                "codec": cs[0]["codec"],
                "series": series,
                "nmse": target,
                "bits_per_param": _num(v),
                "bound_bits_per_param": _num(b),
                "ratio_to_bound": _num(v / b) if b > 0 and not math.isnan(v) else None,
            }
            if with_ctx:
                v = _interp_bits(cs, target, "context_bits_per_param")
                row["context_bits_per_param"] = _num(v)
                row["context_ratio_to_bound"] = _num(v / b) if b > 0 and not math.isnan(v) else None
            table.append(row)
    return {
        "schema": SCHEMA,
        "name": name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source": {
            **(source or {}),
            "num_updates": len(keys),
            "params_per_update": sorted({int(updates[k].size) for k in keys}),
        },
        "seed": seed,
        "configs": configs,
        "points": points,
        "curves": curves,
        "table": table,
        "bound": (
            {"method": "blahut-arimoto, memoryless, MSE", **rd.to_json()}
            if rd is not None
            else None
        ),
        "consistency": consistency(points, configs, consistency_codec, series_of),
        "machine": machine_info(),
        "versions": versions(),
    }


def consistency(
    points: Sequence[Mapping[str, Any]],
    configs: Sequence[Mapping[str, Any]],
    codec_id: str,
    series_of: Sequence[str] | None = None,
) -> dict[str, Any] | None:
    """How much one codec's frontier varies across updates (clients and rounds).

    The codec's first series is used (``series_of``: each config's series; by default
    all of the codec's configs).

    Each update's own curve (bits/param against NMSE over the codec's sweep) is read at a
    grid of NMSE values inside every curve's range; ``spread`` is the mean over the grid of
    the coefficient of variation (std / mean) of bits/param across updates: 0 means every
    client and round has the same frontier.
    """
    idx = [i for i, c in enumerate(configs) if c["id"] == codec_id]
    if series_of is not None and idx:
        idx = [i for i in idx if series_of[i] == series_of[idx[0]]]
    if len(idx) < 2:
        return None
    by_update: dict[str, list[tuple[float, float]]] = {}
    for p in points:
        if p["config"] in idx and p["nmse"] > 0:
            by_update.setdefault(p["update"], []).append((p["nmse"], p["bits_per_param"]))
    curves = {k: sorted(v) for k, v in by_update.items() if len(v) >= 2}
    if len(curves) < 2:
        return None
    lo = max(c[0][0] for c in curves.values())
    hi = min(c[-1][0] for c in curves.values())
    if not lo < hi:
        return None
    grid = np.geomspace(lo, hi, 8)
    bits = np.array(
        [
            np.interp(np.log(grid), np.log([n for n, _ in c]), [b for _, b in c])
            for c in curves.values()
        ]
    )
    cv = bits.std(axis=0) / bits.mean(axis=0)
    rounds = [_round_client(k)[0] for k in curves]
    within = []
    for r in sorted({r for r in rounds if r is not None}):
        rows = bits[[i for i, ri in enumerate(rounds) if ri == r]]
        if len(rows) >= 2:
            within.append(float((rows.std(axis=0) / rows.mean(axis=0)).mean()))
    return {
        "codec": codec_id,
        "configs": idx,
        "nmse_grid": grid.tolist(),
        "cv_per_nmse": cv.tolist(),
        "spread": float(cv.mean()),
        "spread_within_round": float(np.mean(within)) if within else None,
        "num_updates": len(curves),
    }


def _normalized(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    rms = float(np.sqrt(np.mean(x * x))) if x.size else 0.0
    return x / rms if rms > 0 else x[:0]


def _context_bits(codec: Any, payload: bytes, seed: int, layout: Layout | None, n: int) -> float:
    """bits/param of an ideal coder with the context coder's contexts on a payload's levels
    (its own tensors; a rotated update is one vector)."""
    lv = codec.decode_levels(payload, seed=seed)
    tensors = lv.tensors
    if tensors is None:
        rotated = codec.rotate
        shapes = _tensors(None if rotated else layout, (n,), n)
        tensors = ctx_coder.tensors_array(shapes)
    return ctx_coder.context_entropy_bits(lv.levels, tensors) / max(n, 1)


def _interp_bits(
    curves: Sequence[Mapping[str, Any]], nmse: float, key: str = "bits_per_param"
) -> float:
    """``key`` (bits/param) of a codec at ``nmse``, linear in log(NMSE) between its sweep
    points."""
    pts = sorted((c["nmse"], c[key]) for c in curves if c["nmse"] > 0)
    if not pts or not pts[0][0] <= nmse <= pts[-1][0]:
        return math.nan
    if len(pts) == 1:
        return pts[0][1]
    return float(np.interp(np.log(nmse), np.log([p[0] for p in pts]), [p[1] for p in pts]))


def _rate(points: Sequence[Mapping[str, Any]], key: str) -> float:
    params = sum(p["params"] for p in points)
    seconds = sum(p[key] for p in points)
    return params / seconds / 1e6 if seconds > 0 else math.inf


def _num(v: float) -> float | None:
    return None if v is None or math.isnan(v) or math.isinf(v) else float(v)


def machine_info() -> dict[str, Any]:
    import os

    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("fedcodec", "numpy", "numba", "constriction", "torch", "matplotlib"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def markdown_table(doc: Mapping[str, Any]) -> str:
    """bits/param of each codec at the table's NMSE values, and the ratio to the bound."""
    targets = sorted({r["nmse"] for r in doc["table"]})
    head = "| codec | " + " | ".join(f"NMSE {t:g}: bits (× bound)" for t in targets) + " |"
    lines = [head, "|---|" + "---:|" * len(targets)]
    bound = {r["nmse"]: r["bound_bits_per_param"] for r in doc["table"]}
    for series in dict.fromkeys(r.get("series", r["codec"]) for r in doc["table"]):
        rows = [x for x in doc["table"] if x.get("series", x["codec"]) == series]
        cells = []
        for t in targets:
            r = next(x for x in rows if x["nmse"] == t)
            if r["bits_per_param"] is None:
                cells.append("-")
            elif r["ratio_to_bound"] is None:
                cells.append(f"{r['bits_per_param']:.3f}")
            else:
                cells.append(f"{r['bits_per_param']:.3f} ({r['ratio_to_bound']:.2f}×)")
        lines.append(f"| {series} | " + " | ".join(cells) + " |")
        if all("context_bits_per_param" in x for x in rows):
            cells = []
            for t in targets:
                r = next(x for x in rows if x["nmse"] == t)
                v, ratio = r["context_bits_per_param"], r["context_ratio_to_bound"]
                cells.append(
                    "-" if v is None else f"{v:.3f}" + ("" if ratio is None else f" ({ratio:.2f}×)")
                )
            lines.append(f"| {series}: ideal coder, its contexts | " + " | ".join(cells) + " |")
    if doc.get("bound"):
        cells = ["-" if bound[t] is None else f"{bound[t]:.3f}" for t in targets]
        lines.append("| **bound** (Blahut–Arimoto) | " + " | ".join(cells) + " |")
    return "\n".join(lines)
