"""Render docs/benchmarks.md's tables from the committed results in ``bench/results/``.

The page's prose is written by hand; each table sits between two markers::

    <!-- report:NAME -->
    ...generated: do not edit by hand...
    <!-- /report:NAME -->

and is what ``BLOCKS[NAME]`` renders from its JSON files. Run::

    python bench/report.py            # rewrite the generated blocks in place
    python bench/report.py --check    # exit 1 (and name them) if any block is stale

The test suite runs the check (tests/test_bench_report.py), so a result changed without
its page, or a table edited by hand, fails.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PAGE = ROOT / "docs" / "benchmarks.md"
#: the pages with generated blocks: the summary and the lab notes (every block of
#: ``BLOCKS`` stands in one of them)
PAGES = (PAGE, RESULTS / "lab_notes.md")
MARK = re.compile(r"<!-- report:([\w-]+) -->\n(.*?)<!-- /report:\1 -->", re.S)


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RESULTS / name).read_text())
    return data


def _cpu(machine: Any) -> str:
    """The machine's CPU as the results name it."""
    if isinstance(machine, str):
        return machine
    cpu = machine.get("processor") or machine.get("machine") or "?"
    return f"{cpu}, {machine.get('cpu_count', '?')} cores"


def _x(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}×"


def _table(header: list[str], align: str, rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


# -- rate ------------------------------------------------------------------------------------
def frontier_cnn() -> list[str]:
    d = _load("frontier_fmnist_cnn.json")
    targets = sorted({r["nmse"] for r in d["table"]})
    series: dict[str, dict[float, dict[str, Any]]] = {}
    for r in d["table"]:
        series.setdefault(r["series"], {})[r["nmse"]] = r
    rows = []
    for name, cells in series.items():
        label = "rdq (default coder)" if name == "rdq" else name
        rows.append(
            [label]
            + [
                "-"
                if cells[t]["bits_per_param"] is None
                else f"{cells[t]['bits_per_param']:.3f} ({_x(cells[t]['ratio_to_bound'])})"
                for t in targets
            ]
        )
    bound = {r["nmse"]: r["bound_bits_per_param"] for r in d["table"]}
    rows.append(["**memoryless bound**"] + [f"{bound[t]:.3f}" for t in targets])
    src = d["source"]
    return [
        f"{d['name']}: {src['num_updates']} updates of {src['params_per_update'][0]:,} params; "
        f"{_cpu(d['machine'])}, {d['created'][:10]}; `bench/results/frontier_fmnist_cnn.json`",
        "",
        *_table(
            ["codec", *(f"NMSE {t:g}: bits/param (× bound)" for t in targets)],
            "l" + "r" * len(targets),
            rows,
        ),
    ]


def nncodec() -> list[str]:
    rows = []
    notes = []
    for model, name in (("CNN", "nncodec_cnn.json"), ("LSTM 2x256", "nncodec_lstm.json")):
        d = _load(name)
        notes.append(f"`{d['command']}`")
        for t in d["targets"]:
            cells = [r[f"nmse_{t:g}"] for r in d["rows"]]
            ratios = [c["ratio"] for c in cells if c["ratio"] is not None]

            def mean(key: str, cells: list[dict[str, Any]] = cells) -> str:
                v = [c[key] for c in cells if c[key] is not None]
                return f"{sum(v) / len(v):.3f} ({len(v)})" if v else "-"

            rows.append(
                [
                    model,
                    f"{t:g}",
                    mean("rdq"),
                    mean("nncodec"),
                    mean("nncodec_nonweight_qp_eq_qp"),
                    f"{min(ratios):.2f}–{max(ratios):.2f}× ({len(ratios)})" if ratios else "-",
                ]
            )
        machine = f"{_cpu(d['machine'])}; nncodec {d['versions']['nncodec']}"
    return [
        f"{machine}; `bench/results/nncodec_cnn.json`, `bench/results/nncodec_lstm.json`",
        "",
        *_table(
            [
                "updates",
                "NMSE",
                "rdq default: bits/param (updates)",
                "NNCodec default",
                "NNCodec, nonweight_qp = qp",
                "rdq / better NNCodec, per update",
            ],
            "lrrrrr",
            rows,
        ),
        "",
        "Commands: " + "; ".join(notes) + ".",
    ]


STRUCTURE_COLUMNS = {
    "ans": "rdq `ans`",
    "auto": "rdq `auto`",
    "context_estimate": "KT estimate",
    "ideal_ctx": "ideal, its contexts",
    "ctx": "**rdq default**",
    "rdoq": 'rdq `levels="rdoq"`',
}


def structure() -> list[str]:
    rows, notes = [], []
    for run, label in (("cnn", "Fashion-MNIST `cnn`"), ("lstm", "Shakespeare `lstm` 2×256")):
        d = _load(f"structure_estimate_{run}.json")
        for i, r in enumerate(d["rows"]):
            first = f"{label} ({d['params']:,}; {d['updates']} updates)" if i == 0 else ""
            cells = [
                f"**{_x(r[c]['ratio_to_bound'])}**" if c == "ctx" else _x(r[c]["ratio_to_bound"])
                for c in STRUCTURE_COLUMNS
            ]
            reached = max(r[c]["nmse_reached_max"] for c in ("ans", "auto", "ctx", "rdoq"))
            target, bound = f"{r['nmse_target']:g}", f"{r['bound_at_target']:.3f}"
            rows.append([first, target, f"{reached:.4g}", bound, *cells])
        notes.append(f"`bench/results/structure_estimate_{run}.json` ({_cpu(d['machine'])})")
    return [
        *_table(
            [
                "updates (params)",
                "NMSE target",
                "largest NMSE reached",
                "bound at target (bits/param)",
                *STRUCTURE_COLUMNS.values(),
            ],
            "llrr" + "r" * len(STRUCTURE_COLUMNS),
            rows,
        ),
        "",
        "Results: " + "; ".join(notes) + ".",
    ]


# -- speed -----------------------------------------------------------------------------------
def _with_ratio(value: float, reference: float) -> str:
    """``value`` M/s and its ratio to ``reference`` (the same coder on one thread)."""
    return f"{value:.1f} ({value / reference:.2f}×)"


def ctx_speed() -> list[str]:
    out: list[str] = []
    runs = [("ctx_speed_bpp1.json", "1 bit/param"), ("ctx_speed_nmse005.json", "NMSE 0.05")]
    rows = []
    machine = ""
    for name, rate in runs:
        d = _load(name)
        machine = f"{_cpu(d['machine'])}; {d.get('note', '')}"
        by = {(r["update"], r["coder"], r["threads"]): r for r in d["rows"]}
        for (update, coder, threads), r in by.items():
            if threads != 1:
                continue
            two = by.get((update, coder, 2))
            rows.append(
                [
                    rate,
                    update,
                    f"{r['params']:,}",
                    coder,
                    f"{r['bits_per_param']:.3f}",
                    f"{r['encode_mps']:.1f}",
                    f"{r['decode_mps']:.1f}",
                    "-" if two is None else _with_ratio(two["encode_mps"], r["encode_mps"]),
                    "-" if two is None else _with_ratio(two["decode_mps"], r["decode_mps"]),
                ]
            )
    out += _table(
        [
            "rate",
            "update",
            "params",
            "coder",
            "bits/param",
            "encode M/s (1 thread)",
            "decode M/s (1 thread)",
            "encode (2 threads)",
            "decode (2 threads)",
        ],
        "lllrrrrrr",
        rows,
    )
    out += ["", f"Machine: {machine}. Results: `bench/results/ctx_speed_bpp1.json`, "
            "`bench/results/ctx_speed_nmse005.json`."]  # fmt: skip
    return out


def codec_speed() -> list[str]:
    d = _load("speed.json")
    sizes = d["sizes"]
    by: dict[str, dict[int, dict[str, Any]]] = {}
    for r in d["rows"]:
        by.setdefault(r["codec"], {})[r["params"]] = r
    rows = []
    before_ctx = d["created"][:10] < "2026-11-30"  # RDQ's default was the ANS coder then
    for codec, cells in by.items():
        big = cells[max(sizes)]
        label = codec
        if before_ctx and codec.startswith("rdq(") and "coder=" not in codec:
            label = codec[:-1] + ", coder=ans)"
        rows.append(
            [label, f"{big['bits_per_param']:.3f}"]
            + [
                f"{cells[s]['encode_mparams_per_s']:.0f} / {cells[s]['decode_mparams_per_s']:.0f}"
                for s in sizes
            ]
            + [f"{big['encode_x_copy']:.0f} / {big['decode_x_copy']:.0f}"]
        )
    return [
        f"{_cpu(d['machine'])}, {d['created'][:10]}, best of {d['repeats']}; "
        "`bench/results/speed.json`",
        "",
        *_table(
            [
                "codec (config of that date)",
                "bits/param",
                *(f"{s // 1_000_000}M: encode / decode M params/s" for s in sizes),
                f"{max(sizes) // 1_000_000}M: × copy time (enc / dec)",
            ],
            "lr" + "r" * len(sizes) + "r",
            rows,
        ),
    ]


# -- bits to accuracy ------------------------------------------------------------------------
def _accuracy(suites: list[str]) -> list[str]:
    """The suites' runs; a suite's uncompressed run is shown once in a table (suites that
    continue another's uncompressed run share it: its row is left out the second time)."""
    rows = []
    machines = set()
    shown = set()
    for suite in suites:
        d = _load(f"bits_accuracy_{suite}.json")
        machines.add(_cpu(d["machine"]))
        base = next((r for r in d["table"] if r["label"] == "uncompressed (float32)"), None)
        named = False
        for r in d["table"]:
            key = (r["label"], r["tail_accuracy"], r["mean_bits_per_param"], r["rounds_to_target"])
            if r is base and key in shown:
                continue
            shown.add(key)
            delta = ""
            if base is not None:
                delta = f"{100 * (r['tail_accuracy'] - base['tail_accuracy']):+.2f}"
            rows.append(
                [
                    "" if named else f"`{suite}` ({d['rounds']} rounds)",
                    r["label"],
                    f"{r['mean_bits_per_param']:.3f}",
                    f"{r['tail_accuracy']:.4f}",
                    delta,
                    "-" if r["rounds_to_target"] is None else str(r["rounds_to_target"]),
                ]
            )
            named = True
    return [
        *_table(
            [
                "suite",
                "codec",
                "mean uplink bits/param",
                "tail accuracy",
                "points vs uncompressed",
                "rounds to target",
            ],
            "llrrrr",
            rows,
        ),
        "",
        f"Machines: {', '.join(sorted(machines))}. Results: "
        + ", ".join(f"`bench/results/bits_accuracy_{s}.json`" for s in suites)
        + ".",
    ]


def accuracy_tenth() -> list[str]:
    return _accuracy(["shakespeare-s0", "shakespeare-s1", "fmnist-s0"])


def accuracy_lowbit() -> list[str]:
    return _accuracy(
        [
            "lowbit-shakespeare-s0",
            "lowbit-shakespeare-s1",
            "lowbit-grid-shakespeare-s0",
            "lowbit-grid-shakespeare-s1",
            "lowbit-rates-shakespeare-s0",
            "lowbit-fmnist-s0",
        ]
    )


#: issue 25's Shakespeare suites: every run of them counts for the best-of table
#: the suites with rates by examples, after the first (``lowbit-share-``), by name
_SHARE_SUITES = (
    "share-105-", "flat-", "cosine-", "flat-cosine-", "eden-cosine-", "flat-cosine-105-",
    "cosine-20-", "flat-cosine-20-", "eden-cosine-20-", "flat-cosine-105-20-",
)  # fmt: skip
LOWBIT_SUITES = [
    f"lowbit-{name}shakespeare-s{seed}"
    for seed in (0, 1)
    for name in ("", "grid-", "share-", *_SHARE_SUITES)
]


def _setting(run: dict[str, Any]) -> str | None:
    """The row of the best-of table a run belongs to (None: none)."""
    codec = run.get("codec") or {"id": "identity"}
    share = bool((run.get("config") or {}).get("uplink_rate_by_examples"))
    rates = "rates by examples" if share else "one rate for every client"
    if codec["id"] == "identity":
        return "uncompressed (float32)"
    if codec["id"] == "eden" and codec.get("bits") == 0.1:
        return f"EDEN 0.1, {rates}"
    if codec["id"] == "rdq_unbiased":
        how = "the whole update" if codec.get("per_tensor") is False else "per tensor"
        return f"`rdq_unbiased` ≤ 0.105, rotated {how}, {rates}"
    return None


def _server(run: dict[str, Any]) -> str:
    cfg = run.get("config") or {}
    lr = cfg.get("server_lr", 1.0)
    lr = str(float(lr))
    return f"cosine from {lr}" if cfg.get("server_lr_schedule") == "cosine" else f"lr {lr}"


def _present(suites: list[str]) -> list[str]:
    return [s for s in suites if (RESULTS / f"bits_accuracy_{s}.json").exists()]


def accuracy_best() -> list[str]:
    best: dict[str, dict[int, tuple[float, float, str]]] = {}
    machines = set()
    for suite in _present(LOWBIT_SUITES):
        d = _load(f"bits_accuracy_{suite}.json")
        machines.add(_cpu(d["machine"]))
        for run, row in zip(d["runs"], d["table"], strict=True):
            assert run["label"] == row["label"], suite
            setting = _setting(run)
            bits = row["mean_bits_per_param"]
            if setting is None or (setting.startswith("`rdq") and bits > 0.105):
                continue
            cell = (row["tail_accuracy"], bits, f"{_server(run)}, `{suite}`")
            cells = best.setdefault(setting, {})
            if d["seed"] not in cells or cell[0] > cells[d["seed"]][0]:
                cells[d["seed"]] = cell
    top = {seed: best["uncompressed (float32)"][seed][0] for seed in (0, 1)}
    order = ["uncompressed", "EDEN 0.1, one", "`rdq_unbiased` ≤ 0.105, rotated per tensor, one",
             "EDEN 0.1, rates", "`rdq_unbiased` ≤ 0.105, rotated per tensor, rates"]  # fmt: skip
    rank = {k: next((i for i, o in enumerate(order) if k.startswith(o)), len(order)) for k in best}
    rows = []
    for setting, cells in sorted(best.items(), key=lambda kv: rank[kv[0]]):
        row = [setting]
        for seed in (0, 1):
            if seed not in cells:
                row += ["-", "-"]
                continue
            tail, bits, where = cells[seed]
            row += [f"{tail:.4f} ({100 * (tail - top[seed]):+.2f})", f"{bits:.3f}; {where}"]
        rows.append(row)
    return [
        *_table(
            [
                "setting",
                "seed 0: tail (points)",
                "seed 0: bits/param; server; suite",
                "seed 1: tail (points)",
                "seed 1: bits/param; server; suite",
            ],
            "lrlrl",
            rows,
        ),
        "",
        f"Machines: {', '.join(sorted(machines))}. "
        "Each cell is the best tail accuracy of that setting's runs on that seed (points: "
        "against the best uncompressed run of the seed), from "
        + ", ".join(f"`bench/results/bits_accuracy_{s}.json`" for s in _present(LOWBIT_SUITES))
        + ".",
    ]


def accuracy_share() -> list[str]:
    return _accuracy(
        _present(
            [
                "lowbit-share-shakespeare-s0",
                "lowbit-share-shakespeare-s1",
                "lowbit-share-rates-shakespeare-s0",
                "lowbit-share-fmnist-s0",
                "lowbit-share-fmnist-lr-s0",
                *(f"lowbit-{n}shakespeare-s{seed}" for n in _SHARE_SUITES for seed in (0, 1)),
                "lowbit-flat-fmnist-s0",
                "lowbit-flat-cosine-fmnist-s0",
                "lowbit-cosine-fmnist-s0",
            ]
        )
    )


# -- large updates, frames, memory -----------------------------------------------------------
def large_update() -> list[str]:
    d = _load("large_update.json")
    rows = []
    for r in d["steps"]:
        what = "data and output" if r["step"] == "decode" else "data"
        quality = (
            f"{r['bits_per_param']:.3f} bit/param, {r['frames']} frames"
            if r["step"] == "encode"
            else f"NMSE {r['nmse']:.4f}"
        )
        rows.append(
            [
                r["step"],
                f"{r['seconds']:.1f}",
                f"{d['params'] / r['seconds'] / 1e6:.0f}",
                f"{r['peak'] / 2**30:.2f}",
                f"{r['above'] / r['size']:.1%} (above the {what})",
                quality,
            ]
        )
    return [
        f"`{d['command']}`: {d['params']:,} float32 parameters, RDQ's default at 1 bit/param"
        f"{' with rotate=True' if d['rotate'] else ''}, {d['threads']} threads; "
        f"{_cpu(d['machine'])}; `bench/results/large_update.json`",
        "",
        *_table(
            ["step", "seconds", "M params/s", "peak resident GiB", "peak above", "result"],
            "lrrrll",
            rows,
        ),
    ]


def frames() -> list[str]:
    d = _load("frames.json")
    rows = [
        [
            str(r["frames"]),
            str(r["threads"]),
            f"{r['bits_per_param']:.4f}",
            f"{r['nmse']:.5f}",
            f"{r['encode_s']:.2f}",
            f"{r['decode_s']:.2f}",
        ]
        for r in d["rows"]
    ]
    return [
        f"`{d['command']}`: {d['rows'][0]['params']:,} parameters, RDQ's default at "
        f"{d['rate']}, best of {d['repeat']}; {_cpu(d['machine'])}; `bench/results/frames.json`",
        "",
        *_table(
            ["frames", "threads", "bits/param", "NMSE", "encode s", "decode s"], "rrrrrr", rows
        ),
    ]


#: the memory table's configs: RDQ's default at both rate modes and its other coders
MEMORY_CONFIGS = (
    {"bits_per_param": 1.0},
    {"nmse": 0.05},
    {"bits_per_param": 1.0, "coder": "ans"},
    {"bits_per_param": 1.0, "coder": "rleg"},
)


def memory() -> list[str]:
    d = _load("memory.json")
    rows = [
        [
            r["update"],
            f"`{json.dumps(r['config'])}`",
            f"{r['encode_peak_x']:.2f}",
            f"{r['decode_peak_x']:.2f}",
        ]
        for c in MEMORY_CONFIGS
        for r in d["rows"]
        if r["config"] == c
    ]
    return [
        f"`{d['command'].strip()}`: 1M-parameter updates (`matrix-10M`: 10M), tracemalloc's "
        "peak of NumPy "
        f"allocations as a multiple of the update's size (decode includes its output); "
        f"{_cpu(d['machine'])}; `bench/results/memory.json` (which has "
        f"{len(d['rows']) - len(rows)} more rows, other configs)",
        "",
        *_table(
            ["update", "RDQ config", "encode peak / update", "decode peak / update"], "llrr", rows
        ),
    ]


BLOCKS: dict[str, Callable[[], list[str]]] = {
    "frontier-cnn": frontier_cnn,
    "structure": structure,
    "nncodec": nncodec,
    "ctx-speed": ctx_speed,
    "codec-speed": codec_speed,
    "accuracy-tenth": accuracy_tenth,
    "accuracy-lowbit": accuracy_lowbit,
    "accuracy-share": accuracy_share,
    "accuracy-best": accuracy_best,
    "large-update": large_update,
    "frames": frames,
    "memory": memory,
}


def blocks_of(page: str) -> list[str]:
    return [m.group(1) for m in MARK.finditer(page)]


def render(page: str) -> tuple[str, list[str]]:
    """The page with every generated block re-rendered, and the names of those that
    changed (a block it names that is not in ``BLOCKS`` is an error)."""
    unknown = sorted(set(blocks_of(page)) - BLOCKS.keys())
    if unknown:
        raise SystemExit(f"unknown blocks {unknown}")
    changed = []

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        body = "\n".join(BLOCKS[name]()) + "\n"
        if body != m.group(2):
            changed.append(name)
        return f"<!-- report:{name} -->\n{body}<!-- /report:{name} -->"

    return MARK.sub(sub, page), changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if a block is stale")
    parser.add_argument(
        "--page", type=Path, help="one page only (default: docs/benchmarks.md and the lab notes)"
    )
    args = parser.parse_args(argv)
    pages = [args.page] if args.page else list(PAGES)
    texts = {page: page.read_text() for page in pages}
    if not args.page:
        placed = [name for text in texts.values() for name in blocks_of(text)]
        missing = sorted(BLOCKS.keys() - set(placed))
        twice = sorted({name for name in placed if placed.count(name) > 1})
        if missing or twice:
            raise SystemExit(f"blocks on no page: {missing}; on more than one: {twice}")
    stale = 0
    for page, text in texts.items():
        new, changed = render(text)
        if args.check:
            if changed:
                print(
                    f"{page}: generated blocks out of date: {', '.join(changed)} "
                    "(run: python bench/report.py)"
                )
                stale = 1
            else:
                print(f"{page}: every generated block matches bench/results/")
            continue
        page.write_text(new)
        print(f"{page}: rewrote {', '.join(changed) or 'nothing (up to date)'}")
    return stale


if __name__ == "__main__":
    sys.exit(main())
