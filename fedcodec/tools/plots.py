"""Plots of the benchmark CLI (matplotlib, PNG and SVG), drawn from the JSON documents
alone, so ``fedcodec plot FILE.json`` redraws them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

NMSE_FLOOR = 1e-4


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError("plots need matplotlib: pip install 'fedcodec[bench]'") from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


#: Line styles and markers combined with the colours, so that no two series look alike.
_LINESTYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")


def series_styles(labels: list[str]) -> dict[str, dict[str, Any]]:
    """A distinct (colour, line style, marker) for each label: tab10's colours first, then
    tab20's lighter ones, each colour with its own line style and marker; an uncompressed
    series is black and thicker (the reference every other is read against).

    Examples
    --------
    >>> styles = series_styles([f"codec {i}" for i in range(13)] + ["uncompressed (float32)"])
    >>> len({(s["color"], s["linestyle"], s["marker"]) for s in styles.values()})
    14
    >>> styles["uncompressed (float32)"]["color"]
    'black'
    """
    from matplotlib import colormaps

    tab10 = [colormaps["tab10"](i) for i in range(10)]
    light = [colormaps["tab20"](2 * i + 1) for i in range(10)]
    palette = tab10 + light
    out: dict[str, dict[str, Any]] = {}
    k = 0
    for label in labels:
        if label.startswith("uncompressed"):
            out[label] = {"color": "black", "linestyle": "-", "marker": ".", "linewidth": 2.2}
            continue
        out[label] = {
            "color": palette[k % len(palette)],
            "linestyle": _LINESTYLES[k % len(_LINESTYLES)],
            "marker": _MARKERS[k % len(_MARKERS)],
            "linewidth": 1.4,
        }
        k += 1
    return out


def _title(ax: Any, text: str, width: int = 72) -> None:
    """A title wrapped to the figure's width (a long run name is never cut off)."""
    import textwrap

    ax.set_title("\n".join(textwrap.wrap(text, width)), fontsize=9)


def _log_axes(ax: Any) -> None:
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="both", alpha=0.3)


def _save(fig: Any, out_dir: Path, stem: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.svg"]
    fig.tight_layout()
    fig.savefig(paths[0], dpi=120)
    fig.savefig(paths[1])
    _pyplot().close(fig)
    return paths


def plot_frontier(doc: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """``frontier.png/svg`` (bits/param against NMSE, log axes, with the bound) and
    ``consistency.png/svg`` (one codec's curve per update, coloured by round)."""
    plt = _pyplot()
    out = Path(out_dir)
    fig, ax = plt.subplots(figsize=(7.0, 4.8))
    for series in dict.fromkeys(c.get("series", c["codec"]) for c in doc["curves"]):
        cs = sorted(
            (c for c in doc["curves"] if c.get("series", c["codec"]) == series and c["nmse"] > 0),
            key=lambda c: c["bits_per_param"],
        )
        cs = [c for c in cs if c["nmse"] >= NMSE_FLOOR]  # near-lossless points: off the plot
        if cs:
            (line,) = ax.plot(
                [c["bits_per_param"] for c in cs], [c["nmse"] for c in cs], "o-", label=series
            )
            if all("context_bits_per_param" in c for c in cs):
                ax.plot(
                    [c["context_bits_per_param"] for c in cs],
                    [c["nmse"] for c in cs],
                    ":",
                    color=line.get_color(),
                    label=f"{series}: ideal coder, its contexts",
                )
    bound = doc.get("bound")
    if bound:
        ax.plot(bound["bits_per_param"], bound["nmse"], "k--", label="Shannon bound (memoryless)")
    _log_axes(ax)
    ax.set_xlabel("bits per parameter (8 × payload bytes / params)")
    ax.set_ylabel("NMSE  ‖x − x̂‖² / ‖x‖²")
    n = doc["source"].get("num_updates", "?")
    _title(ax, f"{doc['name']}: mean over {n} client updates (NMSE < {NMSE_FLOOR:g} not shown)")
    ax.legend(fontsize=8)
    paths = _save(fig, out, "frontier")

    cons = doc.get("consistency")
    if cons:
        idx = set(cons.get("configs") or ())
        idx = idx or {i for i, c in enumerate(doc["configs"]) if c["id"] == cons["codec"]}
        by_update: dict[str, list[tuple[float, float, int]]] = {}
        for p in doc["points"]:
            if p["config"] in idx and p["nmse"] > 0:
                by_update.setdefault(p["update"], []).append(
                    (p["bits_per_param"], p["nmse"], p["round"] or 0)
                )
        rounds = sorted({v[0][2] for v in by_update.values()})
        cmap = plt.get_cmap("viridis")
        fig, ax = plt.subplots(figsize=(7.0, 4.8))
        for pts in by_update.values():
            pts.sort()
            r = pts[0][2]
            color = cmap(rounds.index(r) / max(len(rounds) - 1, 1))
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", color=color, alpha=0.6, lw=1)
        if bound:
            ax.plot(bound["bits_per_param"], bound["nmse"], "k--", label="bound (pooled values)")
            ax.legend(fontsize=8)
        _log_axes(ax)
        ax.set_xlabel("bits per parameter")
        ax.set_ylabel("NMSE")
        _title(
            ax,
            f"{cons['codec']} per client and round "
            f"({cons['num_updates']} updates; colour = round): "
            f"spread {cons['spread']:.3f}",
        )
        paths += _save(fig, out, "consistency")
    return paths


def plot_compare(doc: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """``accuracy_vs_uplink.png/svg``: accuracy against cumulative uplink megabytes."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10.5, 4.8))
    styles = series_styles([run["label"] for run in doc["runs"]])
    for run in doc["runs"]:
        rows = [r for r in run["metrics"] if r["test_accuracy"] is not None]
        ax.plot(
            [r["uplink_bits_cum"] / 8e6 for r in rows],
            [r["test_accuracy"] for r in rows],
            label=run["label"],
            markersize=4,
            **styles[run["label"]],
        )
    ax.set_xscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_xlabel("cumulative uplink MB (8 × payload bytes, all clients)")
    ax.set_ylabel("test accuracy")
    _title(ax, f"{doc['name']}: {doc['task']}, {doc['rounds']} rounds, seed {doc['seed']}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the curves
    paths = _save(fig, Path(out_dir), "accuracy_vs_uplink")
    return paths + plot_accuracy_vs_nmse(doc, out_dir)


def plot_accuracy_vs_nmse(doc: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """``accuracy_vs_nmse.png/svg``: each compressed run's accuracy (mean over its last
    10 % of rounds) against its mean update NMSE, with the rank correlation in the title
    (the rate–distortion view: does less distortion per update mean a better model?)."""
    from .compare import accuracy_nmse_points, spearman

    points = accuracy_nmse_points(doc)
    if not points:
        return []
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10.5, 4.8))
    styles = series_styles([p[0] for p in points])
    for label, nmse, acc in points:
        style = styles[label]
        ax.scatter([nmse], [acc], label=label, color=style["color"], marker=style["marker"])
    ax.set_xscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_xlabel("mean update NMSE over the run")
    ax.set_ylabel("test accuracy (mean over the last 10 % of rounds)")
    rho = spearman([p[1] for p in points], [p[2] for p in points])
    _title(
        ax,
        f"{doc['name']}: accuracy vs NMSE" + ("" if rho is None else f", Spearman ρ = {rho:.2f}"),
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, Path(out_dir), "accuracy_vs_nmse")


def plot_document(doc: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Redraw whatever the document is (frontier or compare)."""
    schema = doc.get("schema", "")
    if schema.startswith("fedcodec.frontier/"):
        return plot_frontier(doc, out_dir)
    if schema.startswith("fedcodec.compare/"):
        return plot_compare(doc, out_dir)
    raise ValueError(f"not a fedcodec frontier or compare document (schema {schema!r})")
