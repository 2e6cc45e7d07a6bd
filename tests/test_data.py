"""Tests for obe.data: row converters, bad-row reporting, real-file counts, disjointness, CLI."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from obe import data
from obe.data import STANDARD, load_files, main, take
from obe.tasks.math_datasets import (SOURCES, Problem, Where, convert_aime24, convert_aime25,
                                     convert_amc23, convert_gsm8k, convert_math, convert_math500,
                                     convert_minerva_math, convert_olympiadbench, convert_record,
                                     gsm8k_final, normalize_problem, number_text)
from obe.core.records import Record, read_jsonl

REPO_ROOT = Path(__file__).resolve().parents[1]
W = Where("data/x/train.jsonl", 7, "x/train")


def ok(result: Record | Problem) -> Record:
    assert isinstance(result, Record), str(result)
    return result


def bad(result: Record | Problem) -> Problem:
    assert isinstance(result, Problem), result
    return result


# ----------------------------------------------------------------------------- converters


def test_registry_names_every_source() -> None:
    assert set(SOURCES) == {"math", "math500", "gsm8k", "aime24", "aime25", "amc23",
                            "minerva_math", "olympiadbench", "synthetic"}


def test_math_nested_braces_and_derived_id() -> None:
    row = {"problem": " What is $x$? ", "level": "Level 2", "type": "Algebra",
           "solution": r"So $x = \boxed{\frac{1}{\sqrt{2}}}$."}
    rec = ok(convert_math(row, W))
    assert rec == Record("x/train:7", "What is $x$?", r"\frac{1}{\sqrt{2}}", "math", "Level 2", "Algebra")


def test_math_last_box_wins_and_unique_id_is_the_id() -> None:
    row = {"problem": "p", "solution": r"\boxed{1} then \boxed{2}", "unique_id": "train/algebra/5.json"}
    rec = ok(convert_math(row, W))
    assert (rec.answer, rec.id) == ("2", "math:train/algebra/5.json")


def test_math_braceless_box() -> None:
    assert ok(convert_math({"problem": "p", "solution": r"answer is $\boxed 2$."}, W)).answer == "2"


@pytest.mark.parametrize("solution, reason", [(r"no box at all", "no \\boxed{} answer in 'solution'"),
                                              (r"$\boxed{}$", "empty answer"),
                                              (r"\boxed{\frac{1}{2}", "no \\boxed{} answer in 'solution'")])
def test_math_unparsable_answer(solution: str, reason: str) -> None:
    assert bad(convert_math({"problem": "p", "solution": solution}, W)).reason == reason


def test_math500_int_level_and_own_id() -> None:
    row = {"problem": "p", "solution": "s", "answer": r"106^\circ", "subject": "Geometry",
           "level": 3, "unique_id": "test/geometry/1.json"}
    assert ok(convert_math500(row, W)) == Record("math500:test/geometry/1.json", "p", r"106^\circ",
                                                 "math500", "Level 3", "Geometry")


@pytest.mark.parametrize("text, gold", [("a\nb <<1+1=2>>2\n#### 3,890", "3890"),
                                        ("x\n#### -5", "-5"), ("x\n####18", "18")])
def test_gsm8k_final_answer(text: str, gold: str) -> None:
    rec = ok(convert_gsm8k({"question": "How many?", "answer": text}, W))
    assert (rec.answer, rec.id, rec.problem) == (gold, "x/train:7", "How many?")


def test_gsm8k_without_marker_is_reported() -> None:
    assert bad(convert_gsm8k({"question": "q", "answer": "18"}, W)).reason == "no '####' final answer"


@given(st.integers(min_value=-10**9, max_value=10**9))
def test_gsm8k_commas_property(n: int) -> None:
    assert gsm8k_final(f"work\n#### {n:,}") == str(n)


def test_aime_answers_keep_text_and_ids() -> None:
    assert ok(convert_aime24({"id": 60, "problem": "p", "answer": "025"}, W)) == Record("aime24:60", "p", "025", "aime24")
    assert ok(convert_aime25({"problem_idx": 16, "problem": "p\n", "answer": "468"}, W)).id == "aime25:16"


@pytest.mark.parametrize("value, text", [(27.0, "27"), (2.5, "2.5"), (4, "4"), ("9", "9"), (None, None), (True, None)])
def test_number_text(value: object, text: str | None) -> None:
    assert number_text(value) == text


def test_amc_float_answer() -> None:
    assert ok(convert_amc23({"id": 0, "problem": "p", "answer": 27.0}, W)).answer == "27"
    assert bad(convert_amc23({"id": 0, "problem": "p", "answer": [1]}, W)).reason == "missing or non-numeric 'answer'"


def test_minerva_boxed_answer() -> None:
    rec = ok(convert_minerva_math({"problem": "p", "solution": r"thus \boxed{3e8}", "type": "Astro", "idx": 4}, W))
    assert (rec.id, rec.answer, rec.subject) == ("minerva_math:4", "3e8", "Astro")


@pytest.mark.parametrize("final, gold", [([r"$\frac{1}{2}$"], r"\frac{1}{2}"), (["$69$,$84$"], "69,84"),
                                         (["2"], "2"), ([r"\$5"], r"\$5")])
def test_olympiadbench_answer(final: list[str], gold: str) -> None:
    row = {"id": 1606, "question": "q", "final_answer": final, "subfield": "Algebra"}
    rec = ok(convert_olympiadbench(row, W))
    assert (rec.id, rec.answer, rec.subject) == ("olympiadbench:1606", gold, "Algebra")


def test_olympiadbench_list_shape_is_checked() -> None:
    row = {"id": 1, "question": "q", "final_answer": ["1", "2"]}
    assert "one-element" in bad(convert_olympiadbench(row, W)).reason
    assert bad(convert_olympiadbench({"id": 1, "question": "q", "final_answer": "1"}, W))


@pytest.mark.parametrize("row, reason", [({"problem": "  ", "answer": "1"}, "empty problem"),
                                         ({"answer": "1"}, "missing problem field 'problem'"),
                                         ({"problem": 3, "answer": "1"}, "problem field 'problem' is int, not str"),
                                         ({"problem": "p"}, "missing or non-string 'answer'"),
                                         ({"problem": "p", "answer": " "}, "empty answer")])
def test_common_checks_and_message(row: dict, reason: str) -> None:
    problem = bad(convert_math500(row, W))
    assert problem.reason == reason
    assert str(problem) == f"data/x/train.jsonl line 7: {reason}"


def test_record_rows_keep_their_id() -> None:
    row = Record("syn:train:1", "1+1?", "2", "synthetic").to_dict()
    assert ok(convert_record(row, W)).id == "syn:train:1"
    assert "not a record" in bad(convert_record({"problem": "p"}, W)).reason


def test_take_first_n_or_seeded_sample_in_order() -> None:
    recs = [Record(str(i), "p", "a", "s") for i in range(20)]
    assert take(recs, 3, None) == recs[:3]
    sample = take(recs, 5, 1)
    assert sample == take(recs, 5, 1) and len(sample) == 5
    assert [int(r.id) for r in sample] == sorted(int(r.id) for r in sample)
    assert take(recs, 50, 1) == recs


# ----------------------------------------------------------------------------- bad rows, CLI

BAD_LINES = [
    {"unique_id": "a", "problem": "first", "answer": "1"},
    {"unique_id": "b", "problem": "", "answer": "2"},            # line 2: empty problem
    {"unique_id": "c", "problem": "third", "answer": "3"},
    {"unique_id": "d", "problem": "fourth"},                     # line 4: missing answer
    {"unique_id": "a", "problem": "fifth", "answer": "5"},       # line 5: duplicate id
    '{"unique_id": "f", "problem": "sixth", "answer": ',         # line 6: malformed JSON
    {"unique_id": "g", "problem": "seventh", "answer": "7"},
]


def write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


@pytest.fixture
def bad_file(tmp_path: Path) -> Path:
    (tmp_path / "bad").mkdir()
    return write_lines(tmp_path / "bad" / "test.jsonl", BAD_LINES)


def test_default_mode_drops_and_records_bad_rows(bad_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out" / "m.jsonl"
    assert main(["--source", "math500", "--path", str(bad_file), "--out", str(out)]) == 0
    manifest = json.loads((tmp_path / "out" / "m.manifest.json").read_text())
    dropped = [(d["file"], d["line"], d["reason"].split(" (")[0]) for d in manifest["dropped"]]
    f = str(bad_file)
    assert dropped == [(f, 2, "empty problem"), (f, 4, "missing or non-string 'answer'"),
                       (f, 5, "duplicate id math500:a"), (f, 6, "malformed JSON: Expecting value")]
    assert manifest["counts"] == {"read": 7, "excluded": 0, "dropped": 4, "kept": 3, "written": 3}
    assert [r.id for r in read_jsonl(str(out))] == ["math500:a", "math500:c", "math500:g"]
    captured = capsys.readouterr()
    assert "dropped 4" in captured.out and f"{f} line 6: malformed JSON" in captured.err


def test_strict_mode_fails_listing_every_bad_row(bad_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "strict.jsonl"
    proc = subprocess.run([sys.executable, "-m", "obe.data", "--source", "math500", "--path", str(bad_file),
                           "--out", str(out), "--strict"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 1
    for line in (2, 4, 5, 6):
        assert f"{bad_file} line {line}:" in proc.stderr
    assert "4 bad row(s)" in proc.stderr and not out.exists()


def test_bad_rows_without_malformed_json_go_through_datasets(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "t.jsonl", [x for x in BAD_LINES if not isinstance(x, str)])
    prep = load_files("math500", [path])
    assert prep.inputs[0]["reader"] == "datasets"
    assert [(p.line, p.reason.split(" (")[0]) for p in prep.problems] == [
        (2, "empty problem"), (4, "missing or non-string 'answer'"), (5, "duplicate id math500:a")]


def test_non_utf8_and_non_object_lines_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"problem": "p", "answer": "1"}\n\n{"problem": "\xff", "answer": "2"}\n[1, 2]\n')
    prep = load_files("math500", [path])
    assert [(p.line, p.reason.split(":")[0]) for p in prep.problems] == [(3, "not UTF-8"), (4, "malformed JSON")]
    assert [r.id for r in prep.records] == [f"{tmp_path.name}/t:1"]


def test_exclusion_by_unique_id_and_by_normalized_text(tmp_path: Path) -> None:
    train = write_lines(tmp_path / "train.jsonl", [{"question": "How  many\nApples?", "answer": "#### 1"},
                                                   {"question": "Other", "answer": "#### 2"}])
    held_out = write_lines(tmp_path / "held.jsonl", [{"question": "how many apples?", "answer": "#### 1"}])
    prep = load_files("gsm8k", [train], [held_out])
    assert (prep.excluded, [r.problem for r in prep.records]) == (1, ["Other"])
    assert prep.inputs[-1]["reader"] == "exclude"
    math_rows = [{"problem": "kept", "solution": r"\boxed{1}"}, {"problem": "held", "solution": r"\boxed{2}"}]
    (tmp_path / "math").mkdir()
    math = write_lines(tmp_path / "math" / "test.jsonl", math_rows)
    (tmp_path / "math" / "test_paths.txt").write_text("test/a/1.json\ntest/a/2.json\n")
    m500 = write_lines(tmp_path / "m500.jsonl", [{"problem": "reworded", "answer": "2", "unique_id": "test/a/2.json"}])
    prep = load_files("math", [math], [m500])
    assert [r.id for r in prep.records] == ["math:test/a/1.json"] and prep.excluded == 1


def test_short_sidecar_is_an_error_naming_it(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "train.jsonl", [{"problem": "p", "solution": r"\boxed{1}"}] * 2)
    (tmp_path / "train_paths.txt").write_text("train/a/1.json\n")
    with pytest.raises(ValueError, match="train_paths.txt has 1 lines"):
        load_files("math", [path])


def test_mixed_types_never_change_values(tmp_path: Path) -> None:
    """Arrow may coerce a mixed column; the rows are then taken from the line-by-line parse."""
    path = write_lines(tmp_path / "mixed.jsonl", [{"id": 1, "problem": "p", "answer": 27.0},
                                                  {"id": 2, "problem": "q", "answer": "025"},
                                                  {"id": "x", "problem": "r", "answer": {"a": 1}}])
    prep = load_files("amc23", [path])
    assert [(r.id, r.answer) for r in prep.records] == [("amc23:1", "27"), ("amc23:2", "025")]
    assert [p.line for p in prep.problems] == [3]


def test_limit_must_not_be_negative(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--source", "gsm8k", "--path", "x", "--out", str(tmp_path / "o"), "--limit", "-1"])


def test_outputs_are_deterministic(bad_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "d.jsonl"
    argv = ["--source", "math500", "--path", str(bad_file), "--out", str(out), "--limit", "2", "--seed", "3"]
    snapshots = []
    for _ in range(2):
        assert main(argv) == 0
        snapshots.append((out.read_bytes(), (tmp_path / "d.manifest.json").read_bytes()))
    assert snapshots[0] == snapshots[1] and len(snapshots[0][0].splitlines()) == 2


def test_help_lists_options() -> None:
    proc = subprocess.run([sys.executable, "-m", "obe.data", "--help"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 0
    for option in ("--source", "--path", "--exclude", "--data-dir", "--hub", "--strict", "--limit", "--all"):
        assert option in proc.stdout


def test_missing_file_is_an_error(tmp_path: Path, capsys) -> None:
    assert main(["--source", "gsm8k", "--path", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "nope.jsonl" in capsys.readouterr().err


def test_synthetic_source_calls_make_split(tmp_path: Path, monkeypatch) -> None:
    calls = []

    def make_split(split: str, n: int, seed: int, difficulty: int) -> list[Record]:
        calls.append((split, n, seed, difficulty))
        return [Record(f"synthetic:{split}:{i}", f"{i}+{seed}?", str(i + seed), "synthetic") for i in range(n)]

    monkeypatch.setitem(sys.modules, "obe.tasks.synthetic", types.SimpleNamespace(make_split=make_split))
    out = tmp_path / "syn.jsonl"
    argv = ["--source", "synthetic", "--split", "train", "--n", "5", "--seed", "2", "--difficulty", "3", "--out", str(out)]
    assert main(argv) == 0
    assert calls == [("train", 5, 2, 3)]
    assert [r.answer for r in read_jsonl(str(out))] == ["2", "3", "4", "5", "6"]
    manifest = json.loads((tmp_path / "syn.manifest.json").read_text())
    assert manifest["params"] == {"n": 5, "seed": 2, "difficulty": 3} and manifest["counts"]["written"] == 5


def test_real_synthetic_module_if_present(tmp_path: Path) -> None:
    synthetic = pytest.importorskip("obe.tasks.synthetic")
    if not hasattr(synthetic, "make_split"):
        pytest.skip("obe.tasks.synthetic has no make_split yet")
    out = tmp_path / "s.jsonl"
    assert main(["--source", "synthetic", "--split", "test", "--n", "20", "--seed", "0", "--out", str(out)]) == 0
    assert len(read_jsonl(str(out))) == 20


def test_hub_rows_share_the_converters(tmp_path: Path, monkeypatch) -> None:
    """A hub dataset read offline from a cache (tests/hf_cache.py) goes through the same converter
    and reports its bad rows by repository, revision, split and row."""
    from huggingface_hub import constants

    from hf_cache import card, put_repo

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    rows = [{"question": "q1", "answer": "w\n#### 1,000"}, {"question": "", "answer": "#### 2"}]
    put_repo(tmp_path / "hub", "openai/gsm8k", {"main/test-00000-of-00001.jsonl": "".join(json.dumps(r) + "\n" for r in rows).encode(),
                                              "README.md": card("main", {"test": "main/test-*"})},
             commit="e" * 40)
    out = tmp_path / "hub.jsonl"
    assert main(["--source", "gsm8k", "--hub", "openai/gsm8k:main:test@" + "e" * 40, "--out", str(out)]) == 0
    assert [(r.id, r.answer) for r in read_jsonl(str(out))] == [("gsm8k/test:1", "1000")]
    manifest = json.loads((tmp_path / "hub.manifest.json").read_text())
    assert manifest["dropped"] == [{"file": f"hf:openai/gsm8k@{'e' * 40}[test]", "line": 2, "reason": "empty problem"}]


# ----------------------------------------------------------------------------- real files

EXPECTED = {("math", "train"): 11998, ("math", "test"): 5000, ("math500", "test"): 500,
            ("gsm8k", "train"): 7473, ("gsm8k", "test"): 1319, ("aime24", "test"): 30,
            ("aime25", "test"): 30, ("amc23", "test"): 40, ("minerva_math", "test"): 272,
            ("olympiadbench", "test"): 675}


@functools.lru_cache(maxsize=None)
def prepared(data_dir: Path, source: str, split: str) -> data.Prepared:
    paths, exclude = STANDARD[(source, split)]
    return load_files(source, [data_dir / p for p in paths], [data_dir / p for p in exclude])


@pytest.mark.slow
@pytest.mark.parametrize("source, split", sorted(EXPECTED))
def test_real_counts_and_fields(shared_data: Path, source: str, split: str) -> None:
    prep = prepared(shared_data, source, split)
    assert len(prep.records) == EXPECTED[(source, split)]
    assert len({r.id for r in prep.records}) == len(prep.records)
    assert all(r.problem.strip() and r.answer.strip() and r.source == source for r in prep.records)
    if (source, split) == ("math", "train"):
        # PRM800K 12k split: 7,500 + 5,000 - 500 MATH-500; two train solutions box nothing.
        assert (prep.read, prep.excluded, prep.read - prep.excluded) == (12500, 500, 12000)
        assert [(Path(p.file).name, p.line, p.reason) for p in prep.problems] == [
            ("train.jsonl", 5530, "empty answer"), ("train.jsonl", 5532, "empty answer")]
    else:
        assert prep.problems == [] and prep.read == EXPECTED[(source, split)]


@pytest.mark.slow
def test_real_answer_formats(shared_data: Path) -> None:
    answers = {s: {r.answer for r in prepared(shared_data, s, "test").records} for s in ("aime24", "amc23", "olympiadbench")}
    assert "025" in answers["aime24"] and "27" in answers["amc23"]
    assert all(a.lstrip("-").isdigit() for a in answers["amc23"])
    assert not any("$" in a.replace("\\$", "") for a in answers["olympiadbench"])
    gsm = {r.answer for r in prepared(shared_data, "gsm8k", "train").records}
    assert all(a.lstrip("-").isdigit() for a in gsm)


@pytest.mark.slow
@pytest.mark.parametrize("test_source", ["math500", "aime24", "aime25", "amc23", "minerva_math", "olympiadbench"])
def test_math_train_shares_no_problem_with_test_sets(shared_data: Path, test_source: str) -> None:
    train = {normalize_problem(r.problem) for r in prepared(shared_data, "math", "train").records}
    test = [normalize_problem(r.problem) for r in prepared(shared_data, test_source, "test").records]
    assert not train.intersection(test)


@pytest.mark.slow
def test_gsm8k_train_and_test_are_disjoint(shared_data: Path) -> None:
    train = {normalize_problem(r.problem) for r in prepared(shared_data, "gsm8k", "train").records}
    assert not train.intersection(normalize_problem(r.problem) for r in prepared(shared_data, "gsm8k", "test").records)


@pytest.mark.slow
def test_cli_real_file_end_to_end(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "aime24.jsonl"
    proc = subprocess.run([sys.executable, "-m", "obe.data", "--source", "aime24", "--path",
                           str(shared_data / "aime24" / "test.jsonl"), "--out", str(out), "--limit", "5"],
                          capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "read 30, excluded 0, dropped 0, kept 30, written 5" in proc.stdout
    manifest = json.loads((tmp_path / "aime24.manifest.json").read_text())
    assert manifest["inputs"][0]["sha256"] == "af2b8bd2aa911b6333ad0df32f3ca05c7ae8ed10f1731f4372c8ae26990bf7ac"
    assert len(read_jsonl(str(out))) == 5


@pytest.mark.slow
def test_all_mode_prepares_every_dataset(shared_data: Path, tmp_path: Path, capsys) -> None:
    assert main(["--all", str(shared_data), "--out-dir", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    for (source, split), count in EXPECTED.items():
        assert len(read_jsonl(str(tmp_path / f"{source}_{split}.jsonl"))) == count
        assert source in table


@pytest.mark.slow
def test_cli_data_dir_math_train(shared_data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "math_train.jsonl"
    argv = ["--source", "math", "--split", "train", "--data-dir", str(shared_data), "--out", str(out)]
    assert main(argv) == 0
    assert "read 12500, excluded 500, dropped 2, kept 11998, written 11998" in capsys.readouterr().out
    assert main(argv + ["--strict"]) == 1
    assert "math/train.jsonl line 5530: empty answer" in capsys.readouterr().err
