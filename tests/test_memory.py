"""trainer.keep_freed_memory: glibc malloc keeps freed training buffers in the process (sweep.memory)."""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_benchmark_script

from sweep.spec import Spec

ROOT = Path(__file__).resolve().parents[1]
GLIBC = sys.platform.startswith("linux") and hasattr(ctypes.CDLL(None), "gnu_get_libc_version")

# A fresh process frees a 64 MiB block and allocates it again: with the thresholds kept, glibc hands the same heap
# memory back (no new mapping); with its defaults, a block that large is mmap'd and unmapped every time.
PROBE = """
import ctypes, json, sys
sys.path.insert(0, {root!r})
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "keep":
    from sweep.memory import keep_freed_memory
    assert keep_freed_memory() and keep_freed_memory()
def minor_faults():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
size = 64 << 20
block = libc.malloc(size); ctypes.memset(block, 1, size); libc.free(block)
before = minor_faults()
for _ in range(5):
    block = libc.malloc(size); ctypes.memset(block, 1, size); libc.free(block)
print(json.dumps({{"faults": minor_faults() - before}}))
"""


def faults_after_reuse(setting: str) -> int:
    done = subprocess.run([sys.executable, "-c", PROBE.format(root=str(ROOT)), setting], capture_output=True,
                          text=True, check=True)  # fmt: skip
    return int(json.loads(done.stdout)["faults"])


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only (Linux)")
def test_kept_freed_memory_is_reused_without_faulting_pages_in_again() -> None:
    pages = (64 << 20) // 4096
    kept, returned = faults_after_reuse("keep"), faults_after_reuse("return")
    assert returned >= 5 * pages * 0.9, f"glibc's defaults: every 64 MiB block faulted in again ({returned} faults)"
    assert kept < pages * 0.1, f"kept: the freed block is reused as it is ({kept} faults)"


def test_the_option_is_on_by_default_and_leaves_the_fingerprint_alone() -> None:
    base = {"name": "s", "data": {"train": "t.csv", "validation": "v.csv"}}
    default = Spec.model_validate(base)
    off = Spec.model_validate({**base, "trainer": {"keep_freed_memory": False}})
    assert default.trainer.keep_freed_memory is True and off.trainer.keep_freed_memory is False
    assert default.fingerprint() == off.fingerprint(), "how a worker allocates does not change what trials learn"
    with pytest.raises(ValueError, match="keep_freed_memory"):
        Spec.model_validate({**base, "trainer": {"keep_freed_memory": "yes"}})


def test_train_trial_keeps_freed_memory_only_when_the_setting_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import sweep.objective as objective

    calls: list[str] = []
    monkeypatch.setattr(objective, "keep_freed_memory", lambda: calls.append("kept") or True)

    class Stop(Exception):
        pass

    def stop(*_: object, **__: object) -> None:
        raise Stop  # the rest of the trial is not this test's concern

    monkeypatch.setattr(objective.pl, "seed_everything", stop)
    for keep in (True, False):
        settings = objective.TrialSettings(encoder="e", space=objective.SpaceSpec(), metric="f1_macro", seed=0,
                                           class_weights=None, accelerator="cpu", precision="32-true",
                                           eval_batch_size=8, keep_freed_memory=keep)  # fmt: skip
        with pytest.raises(Stop):
            objective.train_trial(None, None, settings, seed=0, callbacks=[])  # type: ignore[arg-type]
    assert calls == ["kept"]


@pytest.mark.real_data  # bench_limit.py's default dataset is TREC from ../shared/data
def test_bench_allocator_compares_fresh_processes_of_each_setting(tmp_path: Path, tiny_bert: Path) -> None:
    allocator = load_benchmark_script("bench_allocator")
    results = tmp_path / "ALLOCATOR.md"
    argv = ["--seeds", "0", "1", "--processes", "1", "--repeats", "1", "--sides", "ours", "bare",
            "--work", str(tmp_path / "work"), "--results", str(results),
            "--encoder", str(tiny_bert), "--train-size", "40", "--val-size", "12", "--max-length", "32",
            "--batch-size", "8"]  # fmt: skip
    assert allocator.main(argv) == 0
    raw = json.loads(results.with_suffix(".json").read_text(encoding="utf-8"))
    assert [run["order"] for run in raw["runs"]] == [["keep", "return"], ["return", "keep"]]
    for run in raw["runs"]:
        for setting in ("keep", "return"):
            limit = json.loads((tmp_path / "work" / f"seed{run['seed']}" / f"{setting}-0" / "LIMIT.json").read_text())
            assert limit["freed_memory"] == setting and limit["max_rss_mb"] > 0
            assert run[setting]["throughput"]["ours"] == limit["runs"][0]["ours"]["throughput"]
        assert run["gain"]["bare"] == pytest.approx(run["keep"]["throughput"]["bare"] / run["return"]["throughput"]
                                                    ["bare"])  # fmt: skip
    assert "| 0 | keep |" in results.read_text(encoding="utf-8")


def test_bench_allocator_sets_the_setting_itself() -> None:
    with pytest.raises(SystemExit) as exc:
        load_benchmark_script("bench_allocator").parse_args(["--freed-memory", "keep"])
    assert exc.value.code == 2
