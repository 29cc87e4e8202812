"""Imports point one way: sweep -> models/datamodules/reports; nothing imports sweep (DESIGN.md)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sweep", "models", "datamodules", "reports", "record")
_GPU_STACK = {"torch", "transformers", "pytorch_lightning", "lightning"}
FORBIDDEN = {
    "record": {"sweep", "models", "datamodules", "reports", *_GPU_STACK},
    "models": {"sweep", "datamodules", "optuna", "reports", "lightning"},
    "datamodules": {"sweep", "models", "optuna", "reports", "lightning"},
    "reports": {"sweep", "models", "datamodules", *_GPU_STACK},
    "sweep": {"lightning"},
}
TRIAL_MODULES = {"sweep/space.py", "sweep/objective.py"}


# The one module of a sibling that `reports` may read: plain data, no torch (checked at run time below too).
ALLOWED = {"reports": {"models.hyperparameters"}}


def imported_roots(path: Path, allowed: set[str] = frozenset()) -> set[str]:  # type: ignore[assignment]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names if alias.name not in allowed}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module not in allowed:
            roots.add(node.module.split(".")[0])
    return roots


def source_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_one_way(package: str) -> None:
    files = source_files(package)
    assert files, f"no python files under {package}/"
    allowed = ALLOWED.get(package, set())
    bad = {
        str(f.relative_to(ROOT)): sorted(imported_roots(f, allowed) & FORBIDDEN[package])
        for f in files
        if imported_roots(f, allowed) & FORBIDDEN[package]
    }
    assert not bad, f"{package} imports what it must not: {bad}"


def test_optuna_trial_only_in_space_and_objective() -> None:
    offenders = []
    for package in PACKAGES:
        for f in source_files(package):
            rel = str(f.relative_to(ROOT))
            text = f.read_text(encoding="utf-8")
            if rel not in TRIAL_MODULES and (
                "optuna.Trial" in text or "trial.suggest_" in text or "trial.report(" in text
            ):
                offenders.append(rel)
    assert not offenders, f"the Optuna trial leaks outside space.py/objective.py: {offenders}"


def test_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nfrom sweep.spec import Spec\nfrom . import sibling\n")
    assert imported_roots(bad) == {"torch", "sweep"}


# A raw attribute key: `user_attrs["x"]`, `user_attrs.get("x")`, `set_user_attr("x", ...)`, `system_attrs["x"]`.
RAW_KEY = re.compile(r"""(user_attrs|system_attrs)(\.get\(|\[)\s*["']|set_(user|system)_attr\(\s*["']""")


# Tests that must touch raw keys: the record's own tests, this file, and writes of a throwaway key "x" that check a
# store refuses writes at all.
RAW_KEY_TESTS_ALLOWED = {"tests/test_record.py", "tests/test_layering.py"}


def test_the_study_record_is_read_and_written_only_through_its_module() -> None:
    offenders = []
    for package in (*PACKAGES, "benchmarks", "tests"):
        if package == "record":
            continue
        for f in source_files(package):
            if str(f.relative_to(ROOT)) in RAW_KEY_TESTS_ALLOWED:
                continue
            for number, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
                if RAW_KEY.search(line) and 'set_user_attr("x"' not in line:
                    offenders.append(f"{f.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "raw study/trial attribute keys outside record/:\n" + "\n".join(offenders)


def test_raw_key_pattern_sees_each_form() -> None:
    for line in ('t.user_attrs["seed"]', "t.user_attrs.get('seed')", 'trial.set_user_attr("seed", 1)',
                 't.system_attrs.get("failed_trial")'):  # fmt: skip
        assert RAW_KEY.search(line), line
    assert not RAW_KEY.search("record = TrialWriter(trial.set_user_attr)")


HEAVY = tuple(sorted(_GPU_STACK))
LOADED_HEAVY = f"""
import importlib, pkgutil, sys
import record, reports
for module in pkgutil.iter_modules(reports.__path__):
    importlib.import_module(f"reports.{{module.name}}")
print(sorted({{name.split(".")[0] for name in sys.modules}} & {set(HEAVY)!r}))
"""


def test_importing_reports_loads_no_torch_at_run_time() -> None:
    """What `sweep report` relies on to start fast on a machine without a GPU stack: every reports module imported in
    a fresh interpreter leaves torch, transformers and Lightning unloaded (an import through another package counts)."""
    done = subprocess.run(
        [sys.executable, "-c", LOADED_HEAVY], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"importing reports loaded {done.stdout.strip()}"


def test_the_run_time_check_sees_torch_when_it_is_loaded() -> None:
    probe = LOADED_HEAVY.replace("import record, reports\n", "import record, reports, torch\n")
    assert probe != LOADED_HEAVY
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['torch']"
