"""The benchmark CLI: ``main(argv)`` on tiny inputs, JSON checked against the schemas and,
where the result is deterministic, against stored expected files."""

from __future__ import annotations

import csv
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest

jsonschema = pytest.importorskip("jsonschema", reason="pip install 'fedcodec[dev]'")
pytest.importorskip("matplotlib", reason="plots need: pip install 'fedcodec[bench]'")

from fedcodec.cli import main  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
FRONTIER_CODECS = json.dumps(
    [
        {"id": "rdq", "sweep": {"bits_per_param": [0.5, 1.0, 2.0]}},
        {"id": "topk", "sweep": {"fraction": [0.05, 0.3]}},
        {"id": "qsgd", "bucket_size": 256, "sweep": {"num_levels": [2, 8]}},
        {"id": "eden", "bits": 2},
        "fp16",
    ]
)
# fields that vary between runs (timings, dates, the machine)
VOLATILE = {"created", "machine", "versions", "encode_s", "decode_s", "encode_mparams_per_s",
            "decode_mparams_per_s", "path"}  # fmt: skip


def schema(name: str) -> dict[str, Any]:
    text = resources.files("fedcodec").joinpath(f"tools/schemas/{name}.schema.json").read_text()
    return json.loads(text)  # type: ignore[no-any-return]


def frontier_updates() -> dict[str, np.ndarray]:
    """Three rounds × two clients of heavy-tailed updates of different scales (seeded)."""
    rng = np.random.default_rng(2026)
    return {
        f"r{r}_c{c}": (rng.standard_t(4, size=3000) * 10.0 ** -(r + c)).astype(np.float32)
        for r in (1, 2, 3)
        for c in (0, 1)
    }


def strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def assert_close(a: Any, b: Any, path: str = "") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), path
        for k in a:
            assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12), (path, a, b)
    else:
        assert a == b, (path, a, b)


@pytest.fixture(scope="module")
def frontier_doc(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    d = tmp_path_factory.mktemp("frontier")
    np.savez(d / "updates.npz", **frontier_updates())
    out = d / "out"
    argv = ["frontier", "--updates", str(d / "updates.npz"), "--codecs", FRONTIER_CODECS,
            "--name", "tiny", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    return out, json.loads((out / "frontier.json").read_text())


def test_frontier_document_follows_the_schema(frontier_doc: tuple[Path, dict[str, Any]]) -> None:
    out, doc = frontier_doc
    jsonschema.validate(doc, schema("frontier"))
    assert len(doc["configs"]) == 3 + 2 + 2 + 1 + 1
    assert len(doc["points"]) == 9 * 6
    for name in ("frontier.png", "frontier.svg", "consistency.png", "consistency.svg"):
        assert (out / name).stat().st_size > 1000
    assert (out / "frontier.png").read_bytes()[:4] == b"\x89PNG"
    with (out / "frontier.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(doc["points"]) and int(rows[0]["bits"]) == doc["points"][0]["bits"]


def test_frontier_matches_the_stored_expected_file(
    frontier_doc: tuple[Path, dict[str, Any]],
) -> None:
    """Bits, NMSE, the bound and the spread are deterministic (python tests/make_fixtures.py
    rewrites the file after a deliberate change)."""
    expected = json.loads((FIXTURES / "frontier_expected.json").read_text())
    assert_close(strip(frontier_doc[1]), expected)


def test_frontier_numbers_mean_what_they_say(frontier_doc: tuple[Path, dict[str, Any]]) -> None:
    _, doc = frontier_doc
    updates = frontier_updates()
    for p in doc["points"]:
        assert p["bits"] % 8 == 0 and p["bits_per_param"] == p["bits"] / updates[p["update"]].size
    rdq = [c for c in doc["curves"] if c["codec"] == "rdq"]
    for c, target in zip(rdq, (0.5, 1.0, 2.0), strict=True):
        assert abs(c["bits_per_param"] - target) < 0.05 * target + 0.02  # headers on 3k params
        assert c["ratio_to_bound"] >= 1.0  # no codec beats the bound of a memoryless source
    bound = doc["bound"]
    assert bound["bits_per_param"] == sorted(bound["bits_per_param"], reverse=True)
    cons = doc["consistency"]
    assert cons["codec"] == "rdq" and cons["num_updates"] == 6 and 0 <= cons["spread"] < 0.2
    rows = [r for r in doc["table"] if r["codec"] == "rdq" and r["bits_per_param"] is not None]
    assert [r["nmse"] for r in rows] == [0.2, 0.4]  # the sweep's NMSE range covers these
    row = rows[0]
    assert row["ratio_to_bound"] == pytest.approx(
        row["bits_per_param"] / row["bound_bits_per_param"]
    )


def test_plot_redraws_from_json(frontier_doc: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    out, _ = frontier_doc
    assert main(["plot", str(out / "frontier.json"), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "frontier.svg").read_text().lstrip().startswith("<?xml")
    (tmp_path / "other.json").write_text('{"schema": "something/1"}')
    assert main(["plot", str(tmp_path / "other.json")]) == 2


def test_frontier_from_a_task_and_from_its_run(tmp_path: Path) -> None:
    out = tmp_path / "t"
    codecs = '[{"id": "rdq", "sweep": {"bits_per_param": [1, 2]}}, "drive"]'
    argv = ["frontier", "--task", "digits", "--rounds", "2", "--clients-per-round", "3",
            "--codecs", codecs, "--no-bound", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    doc = json.loads((out / "frontier.json").read_text())
    jsonschema.validate(doc, schema("frontier"))
    assert doc["source"]["kind"] == "task" and doc["source"]["num_updates"] == 6
    assert {p["round"] for p in doc["points"]} == {1, 2} and doc["bound"] is None
    again = tmp_path / "again"
    assert main(["frontier", "--from-run", str(out / "run"), "--codecs", codecs, "--no-bound",
                 "--out", str(again)]) == 0  # fmt: skip
    redo = json.loads((again / "frontier.json").read_text())
    assert [p["bits"] for p in redo["points"]] == [p["bits"] for p in doc["points"]]


def test_frontier_errors_say_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frontier", "--from-run", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "--save-updates" in capsys.readouterr().err
    np.savez(tmp_path / "u.npz", r1_c0=np.ones(10, np.float32))
    assert main(["frontier", "--updates", str(tmp_path / "u.npz"), "--codecs", "nope"]) == 2
    assert "no default sweep" in capsys.readouterr().err
    bad = '[{"id": "topk", "sweep": {"fraction": 0.1}}]'
    assert main(["frontier", "--updates", str(tmp_path / "u.npz"), "--codecs", bad]) == 2
    assert "non-empty lists" in capsys.readouterr().err


def test_compare_runs_every_codec_on_the_same_data(tmp_path: Path) -> None:
    codecs = json.dumps(
        [
            {"id": "rdq", "bits_per_param": 1.0},
            {"id": "topk", "fraction": 0.1, "error_feedback": True},
        ]
    )
    argv = ["compare", "--task", "digits", "--rounds", "3", "--clients-per-round", "3",
            "--codecs", codecs, "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    doc = json.loads((tmp_path / "compare.json").read_text())
    jsonschema.validate(doc, schema("compare"))
    labels = [r["label"] for r in doc["runs"]]
    assert labels == [
        "uncompressed (float32)",
        "rdq(bits_per_param=1.0)",
        "topk(fraction=0.1) + EF",
    ]
    plain, rdq, topk = doc["runs"]
    assert topk["error_feedback"] and topk["summary"]["codec"] == {"id": "topk", "fraction": 0.1}
    # same seed, same data: the same clients every round
    assert [m["clients"] for m in plain["metrics"]] == [m["clients"] for m in rdq["metrics"]]
    assert doc["target_accuracy"] == pytest.approx(plain["summary"]["final_accuracy"] - 0.01)
    for run, row in zip(doc["runs"], doc["table"], strict=True):
        assert row["uplink_bits_total"] == sum(m["uplink_bits"] for m in run["metrics"])
    assert doc["table"][1]["uplink_bits_total"] * 20 < doc["table"][0]["uplink_bits_total"]
    assert (tmp_path / "accuracy_vs_uplink.png").exists() and (tmp_path / "compare.csv").exists()
    assert "rounds to" in (tmp_path / "compare.md").read_text()


def test_speed_writes_json_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    codecs = '[{"id": "rdq", "bits_per_param": 1.0}, {"id": "fp16"}]'
    argv = [
        "speed",
        "--sizes",
        "20000",
        "--repeats",
        "1",
        "--codecs",
        codecs,
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    doc = json.loads((tmp_path / "speed.json").read_text())
    jsonschema.validate(doc, schema("speed"))
    names = [r["codec"] for r in doc["rows"]]
    assert names[0] == "memory copy (np.copyto)" and names[-2:] == [
        "rdq(bits_per_param=1.0)",
        "fp16",
    ]
    fp16 = doc["rows"][-1]
    assert fp16["bits_per_param"] == pytest.approx(16, abs=0.05)
    assert fp16["encode_x_copy"] == pytest.approx(fp16["encode_s"] / doc["rows"][0]["encode_s"])
    assert "| fp16 |" in capsys.readouterr().out


def test_compare_quick_is_ci_sized(tmp_path: Path) -> None:
    codecs = json.dumps([{"id": "rdq", "bits_per_param": 1.0}])
    assert main(["compare", "--quick", "--codecs", codecs, "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "compare.json").read_text())
    jsonschema.validate(doc, schema("compare"))
    assert doc["task"] == "digits" and doc["rounds"] == 10
    assert doc["base_config"]["clients_per_round"] == 5
    assert [len(r["metrics"]) for r in doc["runs"]] == [10, 10]


def test_frontier_with_a_layout_codes_tensors_and_reports_context_entropy(tmp_path: Path) -> None:
    """A run's layout.json reaches the codecs: RDQ's context coder sees the matrices (its
    payload carries their shapes), and every RDQ point has the ideal context coder's bits,
    which the memoryless ANS coder cannot approach on structured matrices."""
    from fedcodec import Layout
    from fedcodec.tools.sample_updates import structured_matrix

    layout = Layout((("w", (200, 150), "float32"), ("b", (200,), "float32")))
    updates = {}
    for k in range(2):
        w = structured_matrix(200, 150, seed=k, zero_every=4)
        updates[f"r1_c{k}"] = np.concatenate([w.ravel(), np.full(200, 1e-3, np.float32)])
    np.savez(tmp_path / "updates.npz", **updates)  # type: ignore[arg-type]
    (tmp_path / "layout.json").write_text(json.dumps(layout.to_json()))
    codecs = json.dumps([{"id": "rdq", "nmse": 0.05}, {"id": "rdq", "nmse": 0.05, "coder": "ans"}])
    # the bound is the frontier_doc tests' subject; here it would only take the time
    argv = [
        "frontier",
        "--from-run",
        str(tmp_path),
        "--codecs",
        codecs,
        "--no-bound",
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 0
    doc = json.loads((tmp_path / "o" / "frontier.json").read_text())
    jsonschema.validate(doc, schema("frontier"))
    assert doc["source"]["layout"] is True
    ctx, ans = doc["curves"]
    assert ctx["series"] == "rdq(nmse=0.05)" and ans["series"] == "rdq(nmse=0.05, coder=ans)"
    assert ctx["bits_per_param"] < 0.8 * ans["bits_per_param"]
    for p in doc["points"]:
        assert 0 < p["context_bits_per_param"] < ans["bits_per_param"]
    # --layout with --updates reads the same file; without --updates it is refused
    argv = ["frontier", "--updates", str(tmp_path / "updates.npz"), "--layout",
            str(tmp_path / "layout.json"), "--codecs", codecs, "--no-bound",
            "--out", str(tmp_path / "o2")]  # fmt: skip
    assert main(argv) == 0
    again = json.loads((tmp_path / "o2" / "frontier.json").read_text())
    assert [p["bits"] for p in again["points"]] == [p["bits"] for p in doc["points"]]
    with pytest.raises(SystemExit, match="--layout goes with --updates"):
        main(["frontier", "--task", "digits", "--layout", str(tmp_path / "layout.json")])


def test_tail_accuracy_and_levelled_gain() -> None:
    from fedcodec.tools.compare import levelled_gain, tail_accuracy

    metrics = [{"test_accuracy": a} for a in [0.1] * 70 + [0.5] * 10 + [0.6] * 10 + [0.7] * 10]
    assert tail_accuracy(metrics) == pytest.approx(0.7)  # the last 10 rounds
    assert tail_accuracy(metrics, end=0.8) == pytest.approx(0.5)
    assert levelled_gain(metrics) == pytest.approx(0.2)
    sparse = [{"test_accuracy": None}] * 9 + [{"test_accuracy": 0.9}]  # eval every 10
    assert tail_accuracy(sparse) == pytest.approx(0.9)
    assert tail_accuracy([]) is None and tail_accuracy([{"test_accuracy": None}]) is None


def test_compare_resume_keeps_finished_runs_and_continues_the_others(tmp_path: Path) -> None:
    base = {"task": "digits", "rounds": 3, "clients_per_round": 3, "partition": "iid"}
    specs = [{"id": "rdq", "bits_per_param": 1.0, "downlink_codec": {"id": "fp16"}}]
    from fedcodec.tools.compare import compare

    first = compare(specs, tmp_path, base=base)
    done = tmp_path / "runs" / "00" / "metrics.jsonl"
    stamp = done.stat().st_mtime_ns
    # a longer suite: the finished runs of 3 rounds continue from their checkpoints
    again = compare(specs, tmp_path, base={**base, "rounds": 4}, resume=True)
    assert [len(r["metrics"]) for r in again["runs"]] == [4, 4]
    for a, b in zip(first["runs"], again["runs"], strict=True):
        assert a["metrics"][:3] == [{**m, "seconds": m["seconds"]} for m in b["metrics"][:3]]
    stamp = done.stat().st_mtime_ns
    third = compare(specs, tmp_path, base={**base, "rounds": 4}, resume=True)
    assert done.stat().st_mtime_ns == stamp  # nothing ran again
    assert third["table"][1]["label"].endswith("downlink fp16")
    assert (
        third["runs"][1]["summary"]["downlink_bits_total"]
        < (third["runs"][0]["summary"]["downlink_bits_total"])
    )


def test_spearman_and_accuracy_nmse_points() -> None:
    from fedcodec.tools.compare import accuracy_nmse_points, spearman

    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 2, 3]) == pytest.approx(1.0)  # ties
    assert spearman([1, 2], [2, 1]) is None and spearman([1, 1, 1], [1, 2, 3]) is None
    doc = {"runs": [
        {"label": "plain", "codec": None, "metrics": [{"test_accuracy": 0.9, "nmse_mean": 0}]},
        {"label": "a", "codec": {"id": "rdq"},
         "metrics": [{"test_accuracy": 0.8, "nmse_mean": 0.1},
                     {"test_accuracy": 0.7, "nmse_mean": 0.3}]},
    ]}  # fmt: skip
    assert accuracy_nmse_points(doc) == [("a", pytest.approx(0.2), pytest.approx(0.7))]


def test_compare_spec_config_overrides(tmp_path: Path) -> None:
    from fedcodec.tools.compare import compare

    base = {"task": "digits", "rounds": 2, "clients_per_round": 3, "partition": "iid"}
    specs = [None, {"id": "identity", "config": {"algorithm": "feddyn", "feddyn_alpha": 0.1}}]
    doc = compare(specs, tmp_path, base=base)
    assert [r["summary"]["algorithm"] for r in doc["runs"]] == ["fedavg", "feddyn"]
    assert doc["runs"][1]["codec"] is None and doc["runs"][1]["config"]["feddyn_alpha"] == 0.1
    assert doc["table"][1]["label"] == "uncompressed (float32), algorithm=feddyn, feddyn_alpha=0.1"


def test_compare_table_adds_the_downlink_where_a_run_compresses_it(tmp_path: Path) -> None:
    from fedcodec.tools.compare import compare, markdown_table

    base = {"task": "digits", "rounds": 3, "clients_per_round": 3, "partition": "iid"}
    up = {"id": "rdq", "bits_per_param": 1.0}
    specs = [None, up, {**up, "downlink_codec": {"id": "rdq", "bits_per_param": 2.0}}]
    doc = compare(specs, tmp_path, base=base, target_accuracy=0.0)
    rows = doc["table"]
    # float32 broadcasts against 2 bits/param with the chain: less downlink, same uplink codec
    assert 0 < rows[2]["downlink_bits_total"] < rows[1]["downlink_bits_total"]
    assert rows[1]["downlink_bits_total"] == rows[0]["downlink_bits_total"]
    assert rows[2]["downlink_bits_to_target"] is not None
    lines = markdown_table(doc).splitlines()
    assert lines[0].endswith("| up + down MB to 0.0000 |")
    cells = [c.strip() for c in lines[4].strip("|").split("|")]
    assert len(cells) == 11
    total = (rows[2]["uplink_bits_total"] + rows[2]["downlink_bits_total"]) / 8e6
    assert float(cells[9]) == pytest.approx(total, abs=1e-3)
    # without a downlink codec the table keeps its columns
    doc["runs"] = doc["runs"][:2]
    doc["table"] = rows[:2]
    assert "downlink" not in markdown_table(doc)


def test_compare_keeps_going_past_a_run_that_stops(tmp_path: Path) -> None:
    """A codec whose training blows up is a row of the table, not the end of the suite."""
    from fedcodec.fl.process import ClientError
    from fedcodec.tools import compare as cmp

    base = {"task": "digits", "rounds": 3, "clients_per_round": 3, "partition": "iid"}
    bad = {"id": "rdq", "bits_per_param": 1.0, "config": {"client_lr": 1e38}}  # -> Inf
    specs = [None, bad, {"id": "rdq", "bits_per_param": 1.0}]
    doc = cmp.compare(specs, tmp_path, base=base)
    rows = doc["table"]
    assert rows[1]["stopped_round"] == 1 and rows[1]["tail_accuracy"] is None
    assert "(stopped in round 1)" in rows[1]["label"]
    assert "NaN or Inf" in doc["runs"][1]["summary"]["stopped"]
    jsonschema.validate(doc, schema("compare"))
    assert rows[2]["stopped_round"] is None and rows[2]["tail_accuracy"] is not None
    assert "| - |" in cmp.markdown_table(doc).splitlines()[3]
    assert [p[0] for p in cmp.accuracy_nmse_points(doc)] == [rows[2]["label"]]
    # resume reads the stopped run back instead of running it again
    path = tmp_path / "runs" / "01" / "summary.json"
    marked = {**json.loads(path.read_text()), "mark": 1}  # a new run would not write it
    path.write_text(json.dumps(marked))
    again = cmp.compare(specs, tmp_path, base=base, resume=True)
    assert again["runs"][1]["summary"] == {**doc["runs"][1]["summary"], "mark": 1}
    with pytest.raises(ClientError, match="round 1"):
        cmp.compare(specs[:2], tmp_path / "strict", base=base, keep_going=False)


@pytest.mark.parametrize("command", ["train", "compare", "frontier", "speed", "plot", "warmup"])
def test_every_option_has_help_showing_its_default(command: str) -> None:
    """``fedcodec CMD --help`` as a user runs it: each option has a help line that ends
    with its default (issue 24, item 5)."""
    import subprocess
    import sys
    from pathlib import Path

    cli = str(Path(sys.executable).parent / "fedcodec")
    text = subprocess.run(
        [cli, command, "--help"], capture_output=True, text=True, check=True
    ).stdout
    body = text.split("options:", 1)[1]
    blocks: list[str] = []
    for line in body.splitlines():
        if line.startswith("  -"):
            blocks.append(line)
        elif line.startswith("    ") and blocks:
            blocks[-1] += " " + line.strip()
    blocks = [b for b in blocks if not b.strip().startswith("-h, --help")]
    assert blocks, text
    for block in blocks:
        assert "(default: " in " ".join(block.split()), f"{command}: {block.strip()}"
