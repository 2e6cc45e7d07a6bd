"""Compare two results folders of the same DAG, e.g. before and after a refactor.

    python bench/same_outputs.py /tmp/results_before/smoke /tmp/results_after/smoke

Prints, per file, whether the two runs wrote the same bytes, the same content once wall-clock
fields and the results folder's own path are set aside, or different content (with the first
differing key or line); exits 1 if any file differs or exists on one side only.

Set aside, and listed in the output so nothing is hidden: Snakemake's `benchmarks/` and `logs/`
(timings and progress), W&B run ids (random per run), JSON keys that measure time, load or
memory (`VOLATILE_KEY`), what follows from them (a checkpoint's `metrics_bytes` and its
manifest's size and hash of `state.json`, which holds the timed metrics) and the report's
"Generated <date>" stamp. Everything else, including figures, weights and checkpoints, must be
byte-identical or equal as JSON after those keys are dropped.

A change that adds outputs on purpose names them, and they are set aside and listed too:
``--new-key K`` (a JSON key, at any depth, that only the "after" run writes), ``--removed-key K``
(one that only the "before" run wrote) and
``--changed GLOB`` (files expected to differ, e.g. ``'*/training_args.bin'`` when a library's
pickled arguments change).

    python bench/same_outputs.py BEFORE AFTER --new-key grading/errors --changed '*/manifest.json'
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

SKIPPED_DIRS = ("benchmarks", "logs")
SKIPPED_FILES = ("wandb_run_id",)
VOLATILE_KEY = re.compile(
    r"(seconds|elapsed|load_avg|run_id|^time/|^perf/|_time$|^time$|timestamp|peak_memory|rss|per_s(ec)?$|/s$"
    r"|^metrics_bytes$)"
)
GENERATED_STAMP = re.compile(r"Generated \d{4}-\d\d-\d\d \d\d:\d\d UTC")


def scrub(value: Any, root: str, dropped: set[str]) -> Any:
    """The value with volatile keys removed and the results root replaced by ``<root>``."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if VOLATILE_KEY.search(str(k)):
                dropped.add(str(k))
                continue
            out[k] = scrub(v, root, dropped)
        return out
    if isinstance(value, list):
        return [scrub(v, root, dropped) for v in value]
    if isinstance(value, str):
        return value.replace(root, "<root>")
    return value


def parsed(path: Path, root: str, dropped: set[str]) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [scrub(json.loads(line), root, dropped) for line in text.splitlines() if line.strip()]
    if path.suffix == ".json":
        value = json.loads(text)
        if path.name == "manifest.json" and "state.json" in value.get("files", {}):
            value["files"].pop("state.json")  # size and hash of the timed metrics
            dropped.add("manifest files.state.json")
        return scrub(value, root, dropped)
    return GENERATED_STAMP.sub("Generated <date>", text.replace(root, "<root>"))


def first_difference(a: Any, b: Any, where: str = "") -> str:
    if type(a) is not type(b):
        return f"{where or '<top>'}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                return f"{where}.{k}: only in {'after' if k in b else 'before'}"
            if a[k] != b[k]:
                return first_difference(a[k], b[k], f"{where}.{k}")
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{where or '<top>'}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return first_difference(x, y, f"{where}[{i}]")
    if isinstance(a, str) and "\n" in a:
        for i, (x, y) in enumerate(zip(a.splitlines(), b.splitlines()), 1):
            if x != y:
                return f"line {i}: {x[:80]!r} vs {y[:80]!r}"
    return f"{where or '<top>'}: {str(a)[:80]!r} vs {str(b)[:80]!r}"


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def drop_new(before: Any, after: Any, keys: set[str], dropped: set[str]) -> Any:
    """``after`` without the keys of ``keys`` that ``before`` lacks (at any depth)."""
    if isinstance(after, dict):
        old = before if isinstance(before, dict) else {}
        out = {}
        for k, v in after.items():
            if k in keys and k not in old:
                dropped.add(f"new {k}")
                continue
            out[k] = drop_new(old.get(k), v, keys, dropped)
        return out
    if isinstance(after, list):
        old = before if isinstance(before, list) else []
        return [drop_new(old[i] if i < len(old) else None, v, keys, dropped) for i, v in enumerate(after)]
    return after


def compare(before: Path, after: Path, new_keys: set[str] = frozenset(), changed: tuple[str, ...] = (),
            removed_keys: set[str] = frozenset()) -> int:
    dropped: set[str] = set()
    removed: set[str] = set()
    names = sorted(files(before) | files(after))
    counts = {"identical": 0, "same content": 0, "skipped": 0, "expected": 0, "differ": 0}
    for name in names:
        if name.split("/")[0] in SKIPPED_DIRS or Path(name).name in SKIPPED_FILES:
            counts["skipped"] += 1
            continue
        a, b = before / name, after / name
        if any(fnmatch.fnmatch(name, g) for g in changed):
            counts["expected"] += 1
            dropped.add(f"file {name}")
            continue
        if not (a.exists() and b.exists()):
            print(f"DIFFER  {name}: only {'after' if b.exists() else 'before'}")
            counts["differ"] += 1
            continue
        if a.read_bytes() == b.read_bytes():
            counts["identical"] += 1
            continue
        try:
            x, y = parsed(a, str(before), dropped), parsed(b, str(after), dropped)
            y = drop_new(x, y, set(new_keys), dropped)
            x = drop_new(y, x, set(removed_keys), removed)
        except (UnicodeDecodeError, json.JSONDecodeError):
            x = y = None  # binary and different: a real difference
            print(f"DIFFER  {name}: bytes (sha256 {hashlib.sha256(a.read_bytes()).hexdigest()[:12]} vs "
                  f"{hashlib.sha256(b.read_bytes()).hexdigest()[:12]})")
            counts["differ"] += 1
            continue
        if x == y:
            counts["same content"] += 1
        else:
            print(f"DIFFER  {name}: {first_difference(x, y)}")
            counts["differ"] += 1
    print(f"{len(names)} files: {counts['identical']} byte-identical, {counts['same content']} equal after "
          f"setting aside volatile keys and the root path, {counts['skipped']} skipped "
          f"({', '.join(SKIPPED_DIRS)}/, {', '.join(SKIPPED_FILES)}), {counts['expected']} expected to change "
          f"(--changed), {counts['differ']} different")
    print("set aside:", ", ".join(sorted(dropped | {k.replace("new ", "removed ") for k in removed})) or "none")
    return 1 if counts["differ"] else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--new-key", action="append", default=[], help="a JSON key only the after run writes (repeat)")
    ap.add_argument("--removed-key", action="append", default=[], help="a JSON key only the before run wrote (repeat)")
    ap.add_argument("--changed", action="append", default=[], help="glob of files expected to differ (repeat)")
    args = ap.parse_args(argv)
    return compare(args.before, args.after, set(args.new_key), tuple(args.changed), set(args.removed_key))


if __name__ == "__main__":
    sys.exit(main())
