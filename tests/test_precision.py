"""trainer.precision auto: bf16 mixed precision where the hardware computes in bf16 (a GPU that supports it; on the
CPU, AVX-512 BF16 or AMX), full precision elsewhere; the run says what it chose."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from rich.console import Console
from test_runner import write_spec

from sweep import objective
from sweep.objective import resolve_precision
from sweep.runner import run_study


def test_auto_is_bf16_only_where_the_hardware_computes_in_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(objective, "cpu_has_bf16", lambda: True)
    assert resolve_precision("auto") == resolve_precision("auto", "cpu") == "bf16-mixed"
    monkeypatch.setattr(objective, "cpu_has_bf16", lambda: False)
    assert resolve_precision("auto") == "32-true"
    assert resolve_precision("bf16-mixed") == "bf16-mixed" and resolve_precision("32-true") == "32-true"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    monkeypatch.setattr(objective, "cpu_has_bf16", lambda: True)
    assert resolve_precision("auto") == "32-true"  # training on a GPU without bf16: the CPU does not matter
    assert resolve_precision("auto", "cpu") == "bf16-mixed"  # the CPU chosen explicitly
    assert resolve_precision("auto", "mps") == "32-true"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision("auto") == "bf16-mixed"


def test_the_cpu_check_reads_torch_and_survives_its_absence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert objective.cpu_has_bf16() is False
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert objective.cpu_has_bf16() is True
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    assert objective.cpu_has_bf16() is False


@pytest.mark.parametrize(("has_bf16", "chosen"), [(True, "bf16-mixed"), (False, "32-true")])
def test_a_run_with_auto_says_what_it_chose_and_trains(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
    has_bf16: bool, chosen: str,
) -> None:  # fmt: skip
    monkeypatch.setattr(objective, "cpu_has_bf16", lambda: has_bf16)
    train, val = labelled_csvs
    spec = write_spec(tmp_path, train, val, tiny_bert, search__n_trials=1, trainer={"accelerator": "cpu",
                                                                                    "precision": "auto"})  # fmt: skip
    out = io.StringIO()
    result = run_study(spec, console=Console(file=out, width=200))
    assert f"precision auto: {chosen} on this machine" in out.getvalue()
    assert result.study.trials[0].state.name == "COMPLETE"
