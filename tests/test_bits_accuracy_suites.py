"""The long suites of ``bench/bits_accuracy.py`` (issue 15) are well formed: every run's
config resolves and its codecs build, so a two-hour suite does not stop at its fifth run on
a typo. The suites themselves are benchmarks (hours), not tests."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest

from fedcodec import get_codec
from fedcodec.tools.compare import spec_config

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bits_accuracy.py"


def _module():
    spec = importlib.util.spec_from_file_location("bits_accuracy", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _suites():
    return _module().SUITES


@pytest.mark.parametrize("suite", sorted(_suites()))
def test_every_run_of_the_suite_resolves(suite):
    base, specs = _suites()[suite]
    assert specs[0] is None, "the uncompressed run comes first (the target is relative to it)"
    labels = set()
    for spec in specs:
        run_label, codec, ef, _overrides, config = spec_config(spec, base)
        resolved = config.resolved()
        assert resolved.rounds == base["rounds"] and resolved.seed == base["seed"]
        for c in (codec, config.downlink_codec):
            if c is not None:
                get_codec(c)  # raises on an unknown id or a bad parameter
        if ef:
            assert codec is not None
        labels.add(run_label)
    assert len(labels) == len(specs), "two runs of one suite with the same settings"


def test_spec_config_splits_a_spec():
    base = {"task": "digits", "rounds": 3, "seed": 2}
    spec = {
        "id": "rdq",
        "bits_per_param": 0.1,
        "error_feedback": True,
        "downlink_codec": {"id": "rdq", "bits_per_param": 1.0},
        "config": {"algorithm": "fedpt", "freeze_fraction": 0.9},
    }
    before = copy.deepcopy(spec)
    run_label, codec, ef, overrides, config = spec_config(spec, base)
    assert codec == {"id": "rdq", "bits_per_param": 0.1} and ef
    assert overrides == {"algorithm": "fedpt", "freeze_fraction": 0.9}
    assert config.downlink_codec == {"id": "rdq", "bits_per_param": 1.0}
    assert config.algorithm == "fedpt" and config.rounds == 3 and config.seed == 2
    assert "+ EF" in run_label and "downlink" in run_label and "freeze_fraction=0.9" in run_label
    assert spec == before  # the caller's spec is not changed
    plain = spec_config({"id": "identity", "config": {"algorithm": "feddyn"}}, base)
    assert plain[1] is None and plain[4].codec is None and plain[4].algorithm == "feddyn"


@pytest.mark.parametrize("name", sorted(_module().CONTINUES))
def test_a_continued_suite_differs_from_its_source_only_in_rounds(name):
    """The runs a suite continues must be the same runs, with as many rounds or more
    (resuming refuses any other change)."""
    module = _module()
    source, indices = module.CONTINUES[name]
    base, specs = module.SUITES[name]
    source_base, source_specs = module.SUITES[source]
    assert len(indices) == len(specs)
    assert base["rounds"] >= source_base["rounds"]
    for spec, j in zip(specs, indices, strict=True):
        if j is None:
            continue
        a = spec_config(spec, base)[4].to_json()
        b = spec_config(source_specs[j], source_base)[4].to_json()
        assert {k for k in a if a[k] != b[k]} <= {"rounds"}
