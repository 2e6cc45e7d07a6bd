"""The method registry (obe.rl.methods) is the one list every other place derives from or is tied to."""

from __future__ import annotations

import pytest
import torch
import yaml

from conftest import REPO_ROOT
from obe import analysis, report
from obe.rl import bonuses
from obe.rl.counts import OutcomeCounts
from obe.rl.methods import METHOD_NAMES, METHODS


def test_schema_and_config_name_exactly_the_registry():
    schema = yaml.safe_load((REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert tuple(schema["properties"]["train"]["properties"]["methods"]["items"]["enum"]) == METHOD_NAMES
    assert tuple(schema["properties"]["methods"]["properties"]) == METHOD_NAMES
    config = yaml.safe_load((REPO_ROOT / "config.yaml").read_text())
    assert set(config["methods"]) <= set(METHOD_NAMES) and set(config["train"]["methods"]) <= set(config["methods"])


def test_trainers_analysis_and_report_derive_from_it():
    from obe.training.config import build_parser

    assert list(bonuses.BONUSES) == list(METHOD_NAMES)
    assert bonuses.COUNT_METHODS == {m.name for m in METHODS if m.uses_counts}
    choices = next(a.choices for a in build_parser()._actions if a.dest == "method")
    assert sorted(choices) == sorted(METHOD_NAMES)
    assert analysis.METHOD_ORDER == METHOD_NAMES
    for m in METHODS:
        assert analysis.method_label(m.name) == m.label and analysis.color_map([m.name])[m.name] == m.color
        assert f"{m.label} {m.color_name}" in " ".join(report.GUIDE)
    assert len({m.color for m in METHODS} | {analysis.METHOD_COLORS["base"]}) == len(METHODS) + 1


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_uses_counts_says_whether_the_bonus_reads_the_counts(method):
    keys = [["1", "1", "2"]]
    cfg = bonuses.ExplorationConfig(method=method.name)
    table = OutcomeCounts()
    table.update("q", ["1", "1", "1", "2"])
    with_counts = bonuses.BONUSES[method.name](keys, table.lookup_batch(["q"], keys), cfg)
    fresh = bonuses.BONUSES[method.name](keys, [[1, 1, 1]], cfg)
    assert with_counts.shape == (1, 3) and with_counts.dtype == torch.float64
    assert (not torch.equal(with_counts, fresh)) == method.uses_counts
