"""The GPU pins checked against their packages' published requirements, without downloading them.

``envs/published-metadata.json`` records, for every package that pyproject.toml's ``gpu`` extra
pins exactly (vllm, trl, transformers, accelerate, peft), the ``Requires-Python`` and
``Requires-Dist`` lines of the wheel's METADATA, with the wheel's file name, index URL and
sha256 (where they came from), plus the published versions of every package that both our pins
and those requirements constrain. :func:`conflicts` then decides offline (tests/test_envs.py)
whether the GPU environment can exist: every recorded requirement that applies on Linux x86-64
with the environment's Python (markers evaluated, with the extras we ask for) must leave at least
one published version of the package it names that our own pins (base dependencies narrowed by
the ``gpu`` extra) also admit.

    python envs/published.py            # check the recorded metadata against our pins
    python envs/published.py --refresh  # re-record it (downloads the pinned wheels, ~330 MB)

Limits: only requirements between packages we pin are checked (a conflict deeper in the tree,
e.g. two of vLLM's own dependencies, is pip's to find: ``pip install --dry-run '.[gpu]'``); the
torch wheel itself is not recorded (its CUDA build is ~1 GB; vLLM's ``torch==`` pin is what
matters and is checked).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
METADATA_FILE = REPO / "envs" / "published-metadata.json"
# The environment the GPU rules run in (envs/gpu.yaml: python=3.11 on Linux x86-64 clusters).
TARGET = {"python_version": "3.11", "python_full_version": "3.11.0", "sys_platform": "linux",
          "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
          "implementation_name": "cpython", "platform_python_implementation": "CPython"}
WHEEL_PLATFORM = "manylinux_2_28_x86_64"


def project() -> dict:
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def gpu_pins(proj: dict | None = None) -> dict[str, Requirement]:
    """Our GPU environment's requirements by package: the base dependencies, each replaced by the
    ``gpu`` extra's line for the same package where the extra has one (the extra narrows)."""
    proj = proj or project()
    pins = {canonicalize_name(Requirement(r).name): Requirement(r) for r in proj["dependencies"]}
    pins.update({canonicalize_name(Requirement(r).name): Requirement(r) for r in proj["optional-dependencies"]["gpu"]})
    return pins


def exact_version(req: Requirement) -> str | None:
    specs = list(req.specifier)
    if len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version:
        return specs[0].version
    return None


def applies(req: Requirement, extras: set[str]) -> bool:
    """Whether ``req`` is installed on the target with ``extras`` of its parent requested."""
    if req.marker is None:
        return True
    env = {**default_environment(), **TARGET}
    return any(req.marker.evaluate({**env, "extra": e}) for e in (extras or {""}) | {""})


def conflicts(pins: dict[str, Requirement], metadata: dict) -> list[str]:
    """Every way the recorded requirements disagree with each other or with ``pins``; [] if none."""
    problems = []
    packages = metadata["packages"]
    py = Version(TARGET["python_full_version"])
    for name, req in pins.items():
        pinned = exact_version(req)
        if pinned and name in packages and packages[name]["version"] != pinned:
            problems.append(f"{name}: we pin {pinned}, the recorded metadata is for {packages[name]['version']} "
                            f"(run python envs/published.py --refresh)")
    # requirements on each package, from us and from every recorded package that applies
    constraints: dict[str, list[tuple[str, SpecifierSet]]] = {n: [("obe", r.specifier)] for n, r in pins.items()}
    for name, pkg in packages.items():
        if pkg.get("requires_python") and py not in SpecifierSet(pkg["requires_python"]):
            problems.append(f"{name} {pkg['version']} requires Python {pkg['requires_python']}, the GPU env has {py}")
        extras = set(pins[name].extras) if name in pins else set()
        for line in pkg["requires_dist"]:
            r = Requirement(line)
            target = canonicalize_name(r.name)
            if target in pins and applies(r, extras):
                constraints[target].append((f"{name} {pkg['version']}", r.specifier))
    versions = metadata.get("versions", {})
    for target, specs in constraints.items():
        if len(specs) < 2:
            continue
        pinned = exact_version(pins[target])
        candidates = [pinned] if pinned else versions.get(target)
        if candidates is None:
            problems.append(f"{target}: constrained by {', '.join(s for s, _ in specs)} but no published "
                            f"versions are recorded (run python envs/published.py --refresh)")
            continue
        ok = [v for v in candidates if all(Version(v) in spec for _, spec in specs)]
        if not ok:
            said = "; ".join(f"{who}: {spec or 'any'}" for who, spec in specs)
            problems.append(f"{target}: no published version satisfies all of [{said}]")
    return problems


# -- recording (network: the package index) ----------------------------------------------


def _download(spec: str, dest: Path) -> Path:
    before = set(dest.glob("*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", TARGET["python_version"], "--platform", WHEEL_PLATFORM,
                    "--platform", "any", "-d", str(dest), spec], check=True)
    (new,) = set(dest.glob("*.whl")) - before
    return new


def _wheel_metadata(wheel: Path) -> tuple[str | None, list[str]]:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
        text = z.read(name).decode()
    header = text.split("\n\n", 1)[0].splitlines()
    requires_python = next((h.split(":", 1)[1].strip() for h in header if h.startswith("Requires-Python:")), None)
    return requires_python, [h.split(":", 1)[1].strip() for h in header if h.startswith("Requires-Dist:")]


def _published_versions(name: str) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "pip", "index", "versions", name, "--python-version",
                          TARGET["python_version"]], check=True, capture_output=True, text=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("Available versions:"))
    return [v.strip() for v in line.split(":", 1)[1].split(",") if v.strip()]


def refresh() -> dict:
    pins = gpu_pins()
    gpu_names = {canonicalize_name(Requirement(r).name) for r in project()["optional-dependencies"]["gpu"]}
    packages = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in sorted(gpu_names):
            version = exact_version(pins[name])
            if version is None:
                continue
            wheel = _download(f"{name}=={version}", Path(tmp))
            requires_python, requires_dist = _wheel_metadata(wheel)
            packages[name] = {"version": version, "wheel": wheel.name, "index": "https://pypi.org/simple/",
                              "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
                              "requires_python": requires_python, "requires_dist": requires_dist}
    metadata = {"packages": packages, "versions": {}}
    named = {canonicalize_name(Requirement(l).name) for p in packages.values() for l in p["requires_dist"]}
    for target in sorted(named & set(pins)):
        if exact_version(pins[target]) is None:
            metadata["versions"][target] = _published_versions(target)
    return metadata


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--refresh", action="store_true", help="re-record the metadata from the package index")
    args = ap.parse_args(argv)
    if args.refresh:
        METADATA_FILE.write_text(json.dumps(refresh(), indent=1, sort_keys=True) + "\n")
        print(f"wrote {METADATA_FILE}")
    problems = conflicts(gpu_pins(), json.loads(METADATA_FILE.read_text()))
    for p in problems:
        print("conflict:", p)
    print("GPU pins consistent" if not problems else f"{len(problems)} conflict(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
