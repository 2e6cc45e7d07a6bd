"""The data stage: read dataset files, convert them to ``obe.core.records.Record`` JSONL, write a manifest.

Each source's row converter (and the gold-answer parsing behind it) lives in
``obe.tasks.math_datasets``; this module does what surrounds it: reading local JSONL files line
by line, or a hub dataset pinned by revision from the Hugging Face cache (``obe.core.hub``), MATH's
``*_paths.txt`` ids, removing excluded problems (MATH-500 from MATH train), the manifest of
inputs, hashes and counts, and the CLI. A hub dataset and a local mirror of it (files laid out as
``STANDARD`` says) go through the same converter and give the same records. Bad rows are never
silent: each is reported by file and line, ``--strict`` fails on them, the default drops them and
lists them in the manifest.

CLI (``python -m obe.data --help``)::

    python -m obe.data --source math500 --path DATA/math500/test.jsonl --split test \\
        --out results/data/math500_test.jsonl
    python -m obe.data --source math --split train --data-dir DATA --out results/data/math_train.jsonl
    python -m obe.data --source math500 --hub HuggingFaceH4/MATH-500:default:test@6e4ed1a2... --out ...
    python -m obe.data --source synthetic --split train --n 2000 --seed 0 --difficulty 1 --out ...
    python -m obe.data --all DATA --out-dir results/data
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from obe.core import hub
from obe.core.files import file_sha256
from obe.core.records import Record, write_jsonl
from obe.core.tracking import add_wandb_args, log_stage_summary
from obe.tasks.math_datasets import SOURCES, Problem, Where, normalize_problem

# (source, split) -> (input files, files whose problems are removed), relative to a data folder:
# the layout of a local mirror (`data_dir`). MATH train for RL is the PRM800K 12k split: all of
# MATH minus the 500 MATH-500 problems.
STANDARD: dict[tuple[str, str], tuple[list[str], list[str]]] = {
    ("math", "train"): (["math/train.jsonl", "math/test.jsonl"], ["math500/test.jsonl"]),
    ("math", "test"): (["math/test.jsonl"], []),
    ("math500", "test"): (["math500/test.jsonl"], []),
    ("gsm8k", "train"): (["gsm8k/train.jsonl"], []),
    ("gsm8k", "test"): (["gsm8k/test.jsonl"], []),
    ("aime24", "test"): (["aime24/test.jsonl"], []),
    ("aime25", "test"): (["aime25/test.jsonl"], []),
    ("amc23", "test"): (["amc23/test.jsonl"], []),
    ("minerva_math", "test"): (["minerva_math/test.jsonl"], []),
    ("olympiadbench", "test"): (["olympiadbench/test.jsonl"], []),
}

# ----------------------------------------------------------------------------- reading rows

Rows = list[tuple[Where, dict[str, Any]]]


def file_tag(path: Path) -> str:
    """``.../math/train.jsonl`` -> ``math/train``: the prefix of ids derived from file and line."""
    return f"{path.parent.name}/{path.stem}" if path.parent.name else path.stem


def scan_jsonl(path: Path) -> tuple[Rows, list[Problem]]:
    """Parse line by line, so a malformed line is reported by number instead of failing the file."""
    rows: Rows = []
    problems: list[Problem] = []
    tag = file_tag(path)
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            where = Where(str(path), number, tag)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                problems.append(where.problem(f"not UTF-8: {err.reason} at byte {err.start}"))
                continue
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                problems.append(where.problem(f"malformed JSON: {err.msg} (column {err.colno})"))
                continue
            if not isinstance(value, dict):
                problems.append(where.problem(f"malformed JSON: a {type(value).__name__}, not an object"))
                continue
            rows.append((where, value))
    return rows, problems


def _quiet_datasets() -> Any:
    """Import ``datasets`` only when needed: the import alone takes ~1.7 s."""
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets


def read_local(path: Path) -> tuple[Rows, list[Problem], str]:
    """Rows of a local JSONL file and the reader used (``datasets`` or ``json-lines``).

    The file is pre-scanned line by line, since ``datasets`` fails a whole file on one bad line
    without naming it. When every line parses, the file is loaded through
    ``datasets.load_dataset("json")`` (the reader the hub path uses too) and its rows are paired
    with the scanned line numbers; they are used only if equal to the scanned rows (up to the
    ``None`` that Arrow fills in for absent keys), so a type coercion can never change a record.
    """
    rows, problems = scan_jsonl(path)
    if problems:
        return rows, problems, "json-lines"
    try:
        table = _quiet_datasets().load_dataset("json", data_files=str(path), split="train")
    except Exception:  # noqa: BLE001 - any Arrow schema failure: the scanned rows are exact
        return rows, problems, "json-lines"
    loaded = [dict(raw) for raw in table]
    if len(loaded) != len(rows) or any(_without_fill(b, a) != a for (_, a), b in zip(rows, loaded)):
        return rows, problems, "json-lines"
    return [(where, row) for (where, _), row in zip(rows, loaded)], problems, "datasets"


def _without_fill(loaded: dict[str, Any], scanned: dict[str, Any]) -> dict[str, Any]:
    """``loaded`` minus the ``None`` values Arrow adds for keys that the line did not have."""
    return {k: v for k, v in loaded.items() if v is not None or k in scanned}


FETCH_HINT = ("; fetch it where the hub is reachable (a login node), into the same HF_HOME: "
              "python -m obe.prefetch --configfile CONFIG (docs/paper_scale.md)")


def read_hub(spec: hub.HubDataset, source: str) -> tuple[Rows, dict[str, Any]]:
    """Rows of every split of a hub dataset at its revision, and the manifest entry of that input
    (commit and sha256 of every file of the snapshot).

    ``line`` is the row index + 1 and ids derived from file and line use the tag
    ``<source>/<split>``, which is what a local mirror's ``<source>/<split>.jsonl`` gives, so
    sources without ids of their own (GSM8K) get the same ids from the hub and from a mirror.
    Offline (every pipeline job), a revision missing from the cache is an error naming it.
    """
    folder = hub.snapshot(spec.id, spec.revision, fetch_hint=FETCH_HINT)
    rows: Rows = []
    for split in spec.split:
        name = f"hf:{spec.id}@{spec.revision or folder.name}[{split}]"
        rows += [(Where(name, i, f"{source}/{split}"), row)
                 for i, row in enumerate(hub.load_split(folder, spec.config, split), start=1)]
    entry = {"hub": spec.spec(), "commit": folder.name, "files": hub.snapshot_files(folder), "reader": "datasets"}
    return rows, entry


def attach_sidecar_ids(path: Path, rows: Rows) -> Rows:
    """Add ``unique_id`` from ``<stem>_paths.txt`` (MATH: line i names the problem of line i)."""
    sidecar = path.with_name(f"{path.stem}_paths.txt")
    if not sidecar.is_file():
        return rows
    ids = sidecar.read_text(encoding="utf-8").splitlines()
    out: Rows = []
    for where, row in rows:
        if where.line > len(ids):
            raise ValueError(f"{sidecar} has {len(ids)} lines, but {path} has a row on line {where.line}")
        out.append((where, row if "unique_id" in row else {**row, "unique_id": ids[where.line - 1]}))
    return out


@dataclass(frozen=True)
class Exclusion:
    """Problems to keep out of a split: by ``unique_id`` (the PRM800K convention for MATH-500)
    and, for sources without one, by normalized problem text."""

    ids: frozenset[str] = frozenset()
    texts: frozenset[str] = frozenset()

    def matches(self, row: dict[str, Any], record: Record) -> bool:
        return row.get("unique_id") in self.ids or normalize_problem(record.problem) in self.texts


def exclusion_of(rows: Iterable[dict[str, Any]]) -> Exclusion:
    """The ``unique_id`` values and normalized problem texts of ``rows``."""
    ids: set[str] = set()
    texts: set[str] = set()
    for row in rows:
        if isinstance(row.get("unique_id"), str):
            ids.add(row["unique_id"])
        texts.update(normalize_problem(row[k]) for k in ("problem", "question") if isinstance(row.get(k), str))
    return Exclusion(frozenset(ids), frozenset(texts))


def exclusion_from(paths: Iterable[Path]) -> Exclusion:
    """The ``unique_id`` values and normalized problem texts of the rows in the files ``paths``."""
    return exclusion_of(row for path in paths for _, row in scan_jsonl(path)[0])


# ----------------------------------------------------------------------------- preparing


@dataclass
class Prepared:
    """Kept records plus everything the manifest reports about how they were obtained."""

    records: list[Record]
    problems: list[Problem] = field(default_factory=list)
    read: int = 0
    excluded: int = 0
    inputs: list[dict[str, Any]] = field(default_factory=list)


def convert_rows(source: str, rows: Rows, exclude: Exclusion = Exclusion()) -> Prepared:
    """Convert rows, drop those matching ``exclude`` (own id or normalized problem), drop bad
    rows and later duplicates of an id. Shared by local files, the hub, and synthetic data."""
    convert = SOURCES[source]
    out = Prepared(records=[], read=len(rows))
    first_seen: dict[str, Where] = {}
    for where, row in rows:
        result = convert(row, where)
        if isinstance(result, Problem):
            out.problems.append(result)
            continue
        if exclude.matches(row, result):
            out.excluded += 1
            continue
        if result.id in first_seen:
            seen = first_seen[result.id]
            out.problems.append(where.problem(f"duplicate id {result.id} (first at {seen.file} line {seen.line})"))
            continue
        first_seen[result.id] = where
        out.records.append(result)
    return out


def load_files(source: str, paths: Sequence[Path], exclude: Sequence[Path] = ()) -> Prepared:
    """Load local JSONL files of one source into records (see ``convert_rows``)."""
    rows: Rows = []
    problems: list[Problem] = []
    inputs: list[dict[str, Any]] = []
    for path in paths:
        file_rows, file_problems, reader = read_local(path)
        rows += attach_sidecar_ids(path, file_rows)
        problems += file_problems
        inputs.append({"path": str(path), "sha256": file_sha256(path), "reader": reader})
        sidecar = path.with_name(f"{path.stem}_paths.txt")
        if sidecar.is_file():
            inputs.append({"path": str(sidecar), "sha256": file_sha256(sidecar), "reader": "ids"})
    inputs += [{"path": str(p), "sha256": file_sha256(p), "reader": "exclude"} for p in exclude]
    out = convert_rows(source, rows, exclusion_from(exclude))
    order = {str(p): i for i, p in enumerate(paths)}
    out.problems = sorted(problems + out.problems, key=lambda p: (order.get(p.file, 0), p.line))
    out.read += len(problems)
    out.inputs = inputs
    return out


def load_hub(source: str, spec: hub.HubDataset) -> Prepared:
    """Load a hub dataset (every split of ``spec``) into records, minus the problems of the hub
    datasets in ``spec.exclude`` (see ``convert_rows``)."""
    rows, entry = read_hub(spec, source)
    excluded_rows: list[dict[str, Any]] = []
    inputs = [entry]
    for other in spec.exclude:
        other_rows, other_entry = read_hub(other, source)
        excluded_rows += [row for _, row in other_rows]
        inputs.append({**other_entry, "reader": "exclude"})
    out = convert_rows(source, rows, exclusion_of(excluded_rows))
    out.inputs = inputs
    return out


def synthetic_rows(split: str, num_questions: int, seed: int, difficulty: int | None) -> Rows:
    """Rows from ``obe.tasks.synthetic.make_split`` (imported here: real data does not need it);
    ``difficulty=None`` leaves that module's default."""
    from obe.tasks.synthetic import make_split

    tag = f"synthetic/{split}"
    records = (make_split(split, num_questions, seed) if difficulty is None
               else make_split(split, num_questions, seed, difficulty))
    return [(Where(tag, i, tag), r.to_dict()) for i, r in enumerate(records, start=1)]


def take(records: list[Record], limit: int | None, seed: int | None) -> list[Record]:
    """First ``limit`` records, or a seeded sample of them kept in file order."""
    if limit is None or limit >= len(records):
        return records
    if seed is None:
        return records[:limit]
    chosen = set(random.Random(seed).sample(range(len(records)), limit))
    return [r for i, r in enumerate(records) if i in chosen]


def write_outputs(prep: Prepared, out: Path, manifest_path: Path, meta: dict[str, Any],
                  limit: int | None = None, seed: int | None = None) -> dict[str, Any]:
    """Write the records (``take(limit, seed)`` of them) and a deterministic manifest: no
    timestamps, so reruns are byte-identical and a Snakemake rule can trust the hashes."""
    records = take(prep.records, limit, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(str(out), records)
    manifest = {
        **meta,
        "limit": limit,
        "inputs": prep.inputs,
        "counts": {"read": prep.read, "excluded": prep.excluded, "dropped": len(prep.problems),
                   "kept": len(prep.records), "written": len(records)},
        "dropped": [p.to_dict() for p in prep.problems],
        "output": {"path": str(out), "sha256": file_sha256(out)},
    }
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def reason_kind(reason: str) -> str:
    """What kind of bad row a manifest reason names, for counts: the text before its details
    (``malformed JSON: Expecting value (column 1)`` -> ``malformed JSON``; ``duplicate id X
    (first at ...)`` -> ``duplicate id``)."""
    kind = reason.split(":", 1)[0].split(" (", 1)[0].strip()
    return "duplicate id" if kind.startswith("duplicate id") else kind


def dropped_by_kind(manifest: dict[str, Any]) -> dict[str, int]:
    """Dropped rows of a manifest counted per :func:`reason_kind`, most frequent first."""
    counts: dict[str, int] = {}
    for row in manifest.get("dropped", []):
        kind = reason_kind(row["reason"])
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def dropped_rows_line(name: str, manifest: dict[str, Any], manifest_path: str) -> str | None:
    """One console line about a prepared dataset's dropped rows (None when none was dropped)."""
    counts = manifest["counts"]
    if not counts["dropped"]:
        return None
    kinds = ", ".join(f"{kind} x{n}" for kind, n in dropped_by_kind(manifest).items())
    return (f"data {name}: {counts['dropped']} of {counts['read']} rows dropped ({kinds}); each row with its "
            f"file and line is in {manifest_path}; data.strict: true makes this an error")


# ----------------------------------------------------------------------------- CLI


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m obe.data",
        description="Convert a math dataset into JSONL records (id, problem, answer, source, level, "
                    "subject) plus a JSON manifest of inputs, hashes, counts and dropped rows.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Bad rows (empty problem, missing or unparsable answer, duplicate id, malformed JSON)\n"
               "are dropped and listed in the manifest, or fail the run with --strict. Source 'math'\n"
               "split 'train' is MATH train + test minus the 500 MATH-500 problems (12,000 rows; two\n"
               "train solutions box nothing, so 11,998 are kept and --strict fails). Reruns write\n"
               "byte-identical files.\n\nexamples:\n"
               "  python -m obe.data --source math500 --path DATA/math500/test.jsonl --out OUT.jsonl\n"
               "  python -m obe.data --source math --split train --data-dir DATA --out OUT.jsonl\n"
               "  python -m obe.data --source math --split train --hub nlile/hendrycks-MATH-benchmark:default:train,test@REV \\\n"
               "      --exclude-hub HuggingFaceH4/MATH-500:default:test@REV --out OUT.jsonl\n"
               "  python -m obe.data --source gsm8k --split test --path DATA/gsm8k/test.jsonl \\\n"
               "      --limit 100 --seed 0 --out OUT.jsonl\n"
               "  python -m obe.data --source synthetic --split train --n 2000 --seed 0 --out OUT.jsonl\n"
               "  python -m obe.data --all DATA --out-dir results/data")
    p.add_argument("--source", choices=sorted(SOURCES), help="dataset kind (selects the row converter)")
    p.add_argument("--split", default="test", help="split name (default: test)")
    p.add_argument("--path", nargs="+", type=Path, help="local JSONL file(s) of the source")
    p.add_argument("--exclude", nargs="*", type=Path, default=[],
                   help="JSONL file(s) whose problems are removed (by unique_id or normalized text)")
    p.add_argument("--data-dir", type=Path, help="shared data folder: take --path/--exclude from its standard layout")
    p.add_argument("--hub", metavar="SPEC",
                   help="Hugging Face hub dataset instead of --path: ID[:CONFIG]:SPLIT[,SPLIT][@REVISION], or ID "
                        "(split: --split), read from the local cache when HF_HUB_OFFLINE=1")
    p.add_argument("--hub-config", help="with --hub: the dataset config (overrides the one in SPEC)")
    p.add_argument("--revision", help="with --hub: the revision, a commit hash (overrides the one in SPEC)")
    p.add_argument("--exclude-hub", nargs="*", default=[], metavar="SPEC",
                   help="with --hub: hub datasets whose problems are removed (by unique_id or normalized text)")
    p.add_argument("--out", type=Path, help="output JSONL path")
    p.add_argument("--manifest", type=Path, help="manifest path (default: OUT with .manifest.json)")
    p.add_argument("--strict", action="store_true", help="fail (exit 1) listing every bad row, write nothing")
    p.add_argument("--limit", type=_count, help="keep only N records (first N, or a sample with --seed)")
    p.add_argument("--seed", type=int, help="seed for --limit sampling and for synthetic generation")
    p.add_argument("--n", type=_count, default=1000, help="synthetic: number of problems (default: 1000)")
    p.add_argument("--difficulty", type=int, help="synthetic: difficulty level (default: obe.tasks.synthetic's)")
    p.add_argument("--all", type=Path, metavar="DATA_DIR", help="prepare every standard dataset found in DATA_DIR")
    p.add_argument("--out-dir", type=Path, help="with --all: folder for <source>_<split>.jsonl files")
    add_wandb_args(p)
    return p


def _report(prep: Prepared, strict: bool) -> bool:
    """Print bad rows to stderr (all of them when strict); True when the run may go on."""
    shown = prep.problems if strict else prep.problems[:20]
    for problem in shown:
        print(f"{'error' if strict else 'warning'}: {problem}", file=sys.stderr)
    if len(prep.problems) > len(shown):
        print(f"warning: ... and {len(prep.problems) - len(shown)} more (see manifest)", file=sys.stderr)
    if strict and prep.problems:
        print(f"error: {len(prep.problems)} bad row(s); nothing written (--strict)", file=sys.stderr)
        return False
    return True


def prepare_one(args: argparse.Namespace) -> int:
    """One source and split into ``--out``; returns the exit status."""
    meta: dict[str, Any] = {"source": args.source, "split": args.split, "seed": args.seed}
    limit = args.limit
    if args.source == "synthetic" and not args.path:
        seed = 0 if args.seed is None else args.seed
        prep = convert_rows("synthetic", synthetic_rows(args.split, args.n, seed, args.difficulty))
        meta.update({"seed": seed, "params": {"n": args.n, "seed": seed, "difficulty": args.difficulty}})
        limit = None  # --n already sets the size; --seed went to the generator
    elif args.hub:
        prep = load_hub(args.source, hub_spec(args))
    else:
        paths, exclude = args.path, args.exclude
        if args.data_dir is not None:
            rel_paths, rel_exclude = STANDARD[(args.source, args.split)]
            paths, exclude = [args.data_dir / r for r in rel_paths], [args.data_dir / r for r in rel_exclude]
        prep = load_files(args.source, paths, exclude)
    if not _report(prep, args.strict):
        return 1
    manifest_path = manifest_path_of(args)
    manifest = write_outputs(prep, args.out, manifest_path, meta, limit, args.seed)
    c = manifest["counts"]
    print(f"{args.source}/{args.split}: read {c['read']}, excluded {c['excluded']}, dropped {c['dropped']}, "
          f"kept {c['kept']}, written {c['written']}\noutput {args.out} sha256={manifest['output']['sha256']}\n"
          f"manifest {manifest_path}")
    return 0


def prepare_all(data_dir: Path, out_dir: Path, strict: bool) -> int:
    """Every standard (source, split) whose files exist in ``data_dir``; prints a count table."""
    status = 0
    lines = [f"{'source':<14}{'split':<7}{'read':>7}{'excluded':>9}{'dropped':>8}{'written':>8}"]
    for (source, split), (rel_paths, rel_exclude) in STANDARD.items():
        paths, exclude = [data_dir / r for r in rel_paths], [data_dir / r for r in rel_exclude]
        if not all(p.is_file() for p in paths + exclude):
            continue
        prep = load_files(source, paths, exclude)
        if not _report(prep, strict):
            status = 1
            continue
        out = out_dir / f"{source}_{split}.jsonl"
        meta = {"source": source, "split": split, "seed": None}
        c = write_outputs(prep, out, out_dir / f"{source}_{split}.manifest.json", meta)["counts"]
        lines.append(f"{source:<14}{split:<7}{c['read']:>7}{c['excluded']:>9}{c['dropped']:>8}{c['written']:>8}")
    print("\n".join(lines))
    return status


def hub_spec(args: argparse.Namespace) -> hub.HubDataset:
    """The hub dataset of ``--hub`` (``--split`` when it names none), ``--hub-config`` and
    ``--revision`` filled in, ``--exclude-hub`` attached."""
    spec = hub.HubDataset.parse(args.hub, args.split)
    return hub.HubDataset(spec.id, spec.split, args.hub_config or spec.config, args.revision or spec.revision,
                          tuple(hub.HubDataset.parse(e) for e in args.exclude_hub))


def manifest_path_of(args: argparse.Namespace) -> Path:
    """``--manifest``, or ``--out`` with ``.jsonl`` replaced by ``.manifest.json``."""
    return args.manifest or args.out.with_name(args.out.name.removesuffix(".jsonl") + ".manifest.json")


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit through ``parser.error`` on a combination of flags that cannot run."""
    if args.all is not None and args.out_dir is None:
        parser.error("--all needs --out-dir")
    if args.all is None and (args.source is None or args.out is None):
        parser.error("--source and --out are required (or use --all DATA_DIR --out-dir DIR)")
    given = [name for name in ("path", "data_dir", "hub") if getattr(args, name)]
    if len(given) > 1:
        parser.error(f"give only one of --path, --data-dir, --hub (got {', '.join(given)})")
    if args.all is None and args.source != "synthetic" and not given:
        parser.error("give --path FILE..., --data-dir DIR, or --hub NAME")
    if not args.hub and (args.hub_config or args.revision or args.exclude_hub):
        parser.error("--hub-config, --revision and --exclude-hub go with --hub")
    if args.hub:
        try:
            hub_spec(args)
        except ValueError as err:
            parser.error(str(err))
    if args.data_dir is not None and (args.source, args.split) not in STANDARD:
        parser.error(f"--data-dir knows no split {args.split!r} of {args.source!r}")


def _log_summary(args: argparse.Namespace) -> None:
    """The written manifest's counts as the run summary of the tracker (W&B when enabled)."""
    manifest_file = manifest_path_of(args)
    if manifest_file.exists():
        manifest = json.loads(manifest_file.read_text())
        log_stage_summary(args, stage="prepare_data", name=Path(args.out).stem,
                          config={k: str(v) for k, v in vars(args).items()}, summary=manifest.get("counts", {}))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    try:
        status = prepare_all(args.all, args.out_dir, args.strict) if args.all else prepare_one(args)
    except (OSError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if status == 0 and args.all is None:
        _log_summary(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
