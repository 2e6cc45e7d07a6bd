"""obe.report builds one self-contained HTML from a synthetic obe.analysis folder."""

from __future__ import annotations

import base64
import json
import re

import pytest

from obe import analysis as A
from obe import report as R
from test_analysis import make_inputs  # fixture builders (tests/ is on sys.path)


@pytest.fixture(scope="module")
def analysis_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    evals, trains, base_train = make_inputs(root / "in", methods=("grpo", "ucb_con", "batch"), seeds=(0, 1),
                                            steps=(8,))
    out = root / "analysis"
    A.run_analysis(evals, trains, base_train, out, A.Options(n_boot=500, dpi=40))
    return out


@pytest.fixture
def bandits_dir(tmp_path, analysis_dir):
    d = tmp_path / "bandits"
    d.mkdir()
    (d / "regret.png").write_bytes((analysis_dir / "fig_training.png").read_bytes())
    (d / "regret.md").write_text("# Bandit regret\n\nFinal regret after `T` steps:\n\n| bonus | regret |\n|---|---|\n"
                                 "| ucb | 12.5 |\n| batch | 30.1 |\n\n- lower is **better**\n")
    return d


def test_report_has_every_section_and_embedded_images(tmp_path, analysis_dir, bandits_dir, capsys):
    out = tmp_path / "sub" / "report.html"
    assert R.main(["--analysis-dir", str(analysis_dir), "--bandits-dir", str(bandits_dir), "--out", str(out)]) == 0
    text = out.read_text()
    for key, title in R.SECTIONS:
        assert f"<section id='{key}'>" in text
        assert f"<h2>{title}</h2>" in text
    a = json.loads((analysis_dir / "analysis.json").read_text())
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == len(a["figures"]) + 1  # + the bandit regret plot
    assert all(base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n" for img in images)
    for f in a["figures"]:
        assert f["title"] in text and "How to read it." in text
    for t in a["tables"]:
        assert R._esc(t["title"]) in text
    # claims are inline, one row per claim, each with a coloured verdict cell
    for c in a["claims"]:
        assert R._esc(c["claim"]) in text
    assert len(re.findall(r'<td class="(ok|bad|unk|na)">', text)) == len(a["claims"])
    # Table 1 and Table 2 values are inlined from the TSV
    cols, rows = R.read_tsv(analysis_dir / "table2_distinct.tsv")
    assert cols[:5] == ["method", "seeds", "solved", "unsolved", "all"]
    assert R._esc(rows[0][2]) in text
    # bandit markdown rendered, nothing external referenced
    assert "<h3>Bandit regret</h3>" in text and "<td>12.5</td>" in text and "<b>better</b>" in text
    assert "http://" not in text.replace("http://www.w3.org", "") and "<script" not in text
    assert "src=\"http" not in text and "<link" not in text


def test_report_without_bandits_and_missing_file(tmp_path, analysis_dir):
    html = R.build_report(analysis_dir)
    assert "no --bandits-dir given" in html
    # a figure deleted after the analysis is reported as missing, not a crash
    copy = tmp_path / "a"
    copy.mkdir()
    for p in analysis_dir.iterdir():
        if p.name != "fig_sampling.png":
            (copy / p.name).write_bytes(p.read_bytes())
    html = R.build_report(copy, bandits_dir=tmp_path / "nowhere")
    assert "missing file in the analysis folder: fig_sampling.png" in html
    assert "holds neither regret.png nor regret.md" in html


def test_report_errors(tmp_path, capsys):
    assert R.main(["--analysis-dir", str(tmp_path), "--out", str(tmp_path / "r.html")]) == 2
    assert "run obe.analysis first" in capsys.readouterr().err


def test_markdown_subset():
    html = R.markdown_to_html("## T\n\ntext <b> & `x`\n\n| a | b\\|c |\n|:--|--:|\n| 1 | 2 |\n")
    assert "<h4>T</h4>" in html and "&lt;b&gt; &amp; <code>x</code>" in html
    assert "<th>b|c</th>" in html and "<td>1</td>" in html and "--" not in html
