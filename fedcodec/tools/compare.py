"""Bits versus accuracy: the harness run once per codec, same seed and data.

``fedcodec compare`` (or :func:`compare`) trains with each uplink codec config, plus the
uncompressed run, and writes one ``fedcodec.compare/1`` JSON document: every run's metric
lines and summary, and a table of final accuracy, bits/param, and the bits and rounds to
reach a target accuracy (default: the uncompressed run's final accuracy minus 1 point).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .frontier import label, machine_info, versions

SCHEMA = "fedcodec.compare/1"

DEFAULT_CODECS: list[dict[str, Any] | None] = [
    None,
    # in training RDQ's nearest rounding goes with error feedback, dithered rounding without
    # (docs/codecs/rdq.md; measured at 0.1 bit/param in docs/benchmarks.md, issue 15)
    {"id": "rdq", "bits_per_param": 1.0, "error_feedback": True},
    {"id": "rdq", "bits_per_param": 0.5, "rounding": "dither"},
    # the memoryless coder the structure-aware default replaced: the same rate, more error
    {"id": "rdq", "bits_per_param": 0.5, "rounding": "dither", "coder": "ans"},
    {"id": "rdq", "bits_per_param": 0.1, "error_feedback": True},
    {"id": "rdq", "bits_per_param": 0.1, "rounding": "dither"},
    {"id": "topk", "fraction": 0.05, "error_feedback": True},
    {"id": "qsgd", "num_levels": 4, "bucket_size": 512},
    {"id": "drive"},
    {"id": "eden", "bits": 2},
    {"id": "eden", "bits": 0.1},
    {"id": "threelc", "error_feedback": True},
    {"id": "fp16"},
]
QUICK = {"task": "digits", "rounds": 10, "clients_per_round": 5, "partition": "iid"}


def parse_specs(text: str) -> list[dict[str, Any] | None]:
    """``--codecs``: a JSON list of codec configs (``null`` = uncompressed); a config may
    carry ``"error_feedback": true``."""
    specs = json.loads(text)
    if not isinstance(specs, list) or not all(s is None or isinstance(s, dict) for s in specs):
        raise ValueError('--codecs must be a JSON list of configs, e.g. [null, {"id": "rdq"}]')
    return specs


def compare(
    specs: Sequence[Mapping[str, Any] | None],
    out_dir: str | Path,
    *,
    base: Mapping[str, Any],
    target_accuracy: float | None = None,
    name: str = "compare",
    progress: bool = False,
    run_kwargs: Mapping[str, Any] | None = None,
    resume: bool = False,
    keep_going: bool = True,
) -> dict[str, Any]:
    """Run the harness per spec under ``out_dir/runs/`` and return the document
    (``run_kwargs`` go to :func:`fedcodec.fl.run`: ``engine="flower"``, ...).

    A spec may carry ``"error_feedback": true``, a ``"downlink_codec"`` and ``"config"``,
    overrides of the run's :class:`~fedcodec.fl.TrainConfig` (``{"id": "identity",
    "config": {"algorithm": "feddyn"}}``: an uncompressed run with other settings). With
    ``resume``, a run whose directory holds the summary of the same config is read back,
    one with a checkpoint of it continues from there (so a long suite can be stopped and
    started again), and the others run from the start.

    A run that stops on a client's error (``ClientError``: a codec's residual that grew to
    Inf, a training step that produced NaN) is a result of the comparison, not the end of
    it: with ``keep_going`` (default) its rounds so far are kept, its summary says
    ``"stopped"`` (the error) and ``"stopped_round"``, its label says where it stopped, and
    the next run starts; ``resume`` reads it back as finished."""
    from ..fl import run
    from ..fl.process import ClientError

    out = Path(out_dir)
    specs = list(specs)
    if None not in specs:
        specs.insert(0, None)  # the uncompressed run is always there
    runs: list[dict[str, Any]] = []
    for i, spec in enumerate(specs):
        run_label, codec, ef, overrides, config = spec_config(spec, base)
        run_dir = out / "runs" / f"{i:02d}"
        summary = None
        if resume:
            summary = _finished(run_dir, config)
        if summary is None:
            again = resume and (run_dir / "checkpoint.npz").is_file()
            try:
                summary = run(
                    config, run_dir, progress=progress, resume=again, **(run_kwargs or {})
                )
            except ClientError:
                if not keep_going:
                    raise
                # the run wrote the summary of its rounds so far, with where it stopped
                summary = json.loads((run_dir / "summary.json").read_text())
        metrics = [json.loads(s) for s in (run_dir / "metrics.jsonl").read_text().splitlines()]
        if summary.get("stopped"):
            run_label += f" (stopped in round {summary['stopped_round']})"
        runs.append(
            {
                "label": run_label,
                "codec": codec,
                "error_feedback": ef,
                "config": overrides,
                "summary": summary,
                "metrics": metrics,
            }
        )
    plain = next(r for r in runs if r["codec"] is None)  # the first: the base config
    plain_tail = tail_accuracy(plain["metrics"])
    if target_accuracy is None and plain_tail is not None:
        # the uncompressed run's accuracy (mean over its last 10 % of rounds) minus a point
        target_accuracy = plain_tail - 0.01
    table = [_row(r, target_accuracy) for r in runs]
    first = runs[0]["summary"]
    doc = {
        "schema": SCHEMA,
        "name": name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "task": first["task"],
        "algorithm": first["algorithm"],
        "rounds": first["rounds"],
        "seed": base.get("seed", 0),
        "base_config": dict(base),
        "engine": first.get("engine", "harness"),
        "target_accuracy": target_accuracy,
        "uncompressed_levelled_gain": levelled_gain(plain["metrics"]),
        "accuracy_nmse_spearman": None,
        "runs": runs,
        "table": table,
        "machine": machine_info(),
        "versions": versions(),
    }
    points = accuracy_nmse_points(doc)
    doc["accuracy_nmse_spearman"] = spearman([p[1] for p in points], [p[2] for p in points])
    return doc


def spec_config(
    spec: Mapping[str, Any] | None, base: Mapping[str, Any]
) -> tuple[str, dict[str, Any] | None, bool, dict[str, Any], Any]:
    """One spec of :func:`compare` as ``(label, codec, error_feedback, overrides, config)``:
    its uplink codec config (``None``: float32), the run's
    :class:`~fedcodec.fl.TrainConfig` (``base`` with the spec's ``config`` overrides, its
    ``downlink_codec`` and error feedback). Raises ``ValueError`` for a spec the harness
    cannot run, before anything runs."""
    from ..fl import TrainConfig

    codec = dict(spec) if spec is not None else None
    ef = bool(codec.pop("error_feedback", False)) if codec is not None else False
    down = codec.pop("downlink_codec", None) if codec is not None else None
    overrides = dict(codec.pop("config", None) or {}) if codec is not None else {}
    if codec is not None and codec.get("id") == "identity" and len(codec) == 1:
        codec = None  # raw float32, as the uncompressed run (with other settings)
    run_label = (
        "uncompressed (float32)" if codec is None else label(codec) + (" + EF" if ef else "")
    )
    if down is not None:
        run_label += f", downlink {label(down)}"
    if overrides:
        run_label += ", " + ", ".join(f"{k}={v}" for k, v in sorted(overrides.items()))
    fields = {**base, **overrides, "codec": codec, "error_feedback": ef}
    if down is not None:
        fields["downlink_codec"] = down
    return run_label, codec, ef, overrides, TrainConfig(**fields)


def _finished(run_dir: Path, config: Any) -> dict[str, Any] | None:
    """The summary of a finished run of ``config`` in ``run_dir``, if there is one."""
    try:
        stored = json.loads((run_dir / "config.json").read_text())
        summary: dict[str, Any] = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    return summary if stored == config.resolved().to_json() else None


def _row(run: Mapping[str, Any], target: float | None) -> dict[str, Any]:
    s = run["summary"]
    hit = None if target is None else first_reaching(run["metrics"], target)
    return {
        "label": run["label"],
        "final_accuracy": s["final_accuracy"],
        "best_accuracy": s["best_accuracy"],
        # a run that stopped early has no last 10 % of its rounds
        "tail_accuracy": None if s.get("stopped") else tail_accuracy(run["metrics"]),
        "stopped_round": s.get("stopped_round"),
        "mean_bits_per_param": s["mean_bits_per_param"],
        "uplink_bits_total": s["uplink_bits_total"],
        "downlink_bits_total": s.get("downlink_bits_total"),
        "rounds_to_target": hit["round"] if hit else None,
        "uplink_bits_to_target": hit["uplink_bits_cum"] if hit else None,
        "downlink_bits_to_target": hit.get("downlink_bits_cum") if hit else None,
    }


def tail_accuracy(
    metrics: Sequence[Mapping[str, Any]], share: float = 0.1, end: float = 1.0
) -> float | None:
    """Mean test accuracy over the evaluated rounds among the ``share`` of the rounds
    that ends at fraction ``end`` of the run (default: the last 10 %). Single rounds swing
    by points on non-IID data; this is the accuracy a comparison should use."""
    if not metrics:
        return None
    start, stop = tail_window(len(metrics), share, end)
    values = [m["test_accuracy"] for m in metrics[start:stop] if m["test_accuracy"] is not None]
    return float(sum(values) / len(values)) if values else None


def tail_window(rounds: int, share: float = 0.1, end: float = 1.0) -> tuple[int, int]:
    """``(start, stop)``: the slice of a run's ``rounds`` metrics that ``tail_accuracy``
    averages (``rounds`` > 0)."""
    stop = max(1, round(end * rounds))
    return min(stop - 1, max(0, stop - max(1, round(share * rounds)))), stop


def first_reaching(metrics: Sequence[Mapping[str, Any]], target: float) -> Mapping[str, Any] | None:
    """The metrics of the first evaluated round at or above accuracy ``target``, or None."""
    return next(
        (m for m in metrics if m["test_accuracy"] is not None and m["test_accuracy"] >= target),
        None,
    )


def accuracy_nmse_points(doc: Mapping[str, Any]) -> list[tuple[str, float, float]]:
    """(label, mean update NMSE over the run, tail accuracy) of every compressed run that
    ran to its end."""
    out = []
    for run in doc["runs"]:
        nmses = [m["nmse_mean"] for m in run["metrics"] if m.get("nmse_mean") is not None]
        acc = tail_accuracy(run["metrics"])
        stopped = run.get("summary", {}).get("stopped")
        if run["codec"] is not None and nmses and acc is not None and not stopped:
            out.append((str(run["label"]), float(sum(nmses) / len(nmses)), acc))
    return out


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None below 3 points."""
    import numpy as np

    if len(a) < 3:
        return None

    def ranks(v: Sequence[float]) -> np.ndarray:
        x = np.asarray(v, np.float64)
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x), dtype=np.float64)
        for value in np.unique(x):  # ties share their mean rank
            r[x == value] = r[x == value].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def levelled_gain(metrics: Sequence[Mapping[str, Any]]) -> float | None:
    """How much the accuracy still rose over the last fifth of the run: the last 10 %'s
    mean minus the mean of the 10 % of rounds ending at 80 % (a run has levelled off
    where this is below half a point)."""
    last, before = tail_accuracy(metrics), tail_accuracy(metrics, end=0.8)
    return None if last is None or before is None else last - before


def _num(x: float | None, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def markdown_table(doc: Mapping[str, Any]) -> str:
    """The document's table in Markdown; where a run compressed the downlink, with the
    downlink's and the total (up + down) megabytes, to the end and to the target."""
    t = doc["target_accuracy"]
    target = "target" if t is None else f"{t:.4f}"
    both = any(r["summary"].get("downlink_codec") for r in doc.get("runs", ()))
    head = (
        "| codec | final acc | last-10% acc | best acc | bits/param | uplink MB "
        f"| rounds to {target} | uplink MB to {target} |"
    )
    rule = "|---|---:|---:|---:|---:|---:|---:|---:|"
    if both:
        head += f" downlink MB | up + down MB | up + down MB to {target} |"
        rule += "---:|---:|---:|"
    lines = [head, rule]
    for r in doc["table"]:
        to_t = r["uplink_bits_to_target"]
        tail = r.get("tail_accuracy")
        line = (
            f"| {r['label']} | {_num(r['final_accuracy'], 4)} "
            f"| {_num(tail, 4)} | {_num(r['best_accuracy'], 4)} "
            f"| {_num(r['mean_bits_per_param'], 3)} | {r['uplink_bits_total'] / 8e6:.3f} "
            f"| {r['rounds_to_target'] or '-'} | {'-' if to_t is None else f'{to_t / 8e6:.3f}'} |"
        )
        if both:
            down = r.get("downlink_bits_total") or 0
            down_t = r.get("downlink_bits_to_target")
            total_t = None if to_t is None or down_t is None else (to_t + down_t) / 8e6
            line += (
                f" {down / 8e6:.3f} | {(r['uplink_bits_total'] + down) / 8e6:.3f} "
                f"| {'-' if total_t is None else f'{total_t:.3f}'} |"
            )
        lines.append(line)
    return "\n".join(lines)
