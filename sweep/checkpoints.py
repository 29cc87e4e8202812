"""Best-epoch weights: kept in memory during a trial, written once (atomically, safetensors) when it ends,
and only the study-wide top-k trials' checkpoints stay on disk."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import optuna
import pytorch_lightning as pl
import torch
from optuna.trial import FrozenTrial
from safetensors import safe_open

from models import quiet_transformers
from record import maximizes, ranked, read_study, read_trial, seed_leaders
from sweep.callbacks import epochs_trained
from sweep.errors import disk_errors

WEIGHTS_FILE = "model.safetensors"


class BestWeights(pl.Callback):
    """After each evaluation, copy the weights to CPU memory if `monitor` improved (first best wins; lower is better
    with `minimize`)."""

    def __init__(self, monitor: str, *, minimize: bool = False):
        self.monitor, self.sign = monitor, -1.0 if minimize else 1.0
        self.best: float | None = None
        self.epoch: int | None = None  # 1-based epoch in which the best evaluation ran
        self.epochs_trained: float | None = None  # training done at that evaluation, in epochs
        self.state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        logged = trainer.callback_metrics.get(self.monitor)
        if logged is None:
            return
        value = float(logged)
        if self.best is None or self.sign * value > self.sign * self.best:
            model: Any = pl_module.model
            self.best, self.epoch = value, trainer.current_epoch + 1
            self.epochs_trained = epochs_trained(trainer)
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def save_tokenizer_once(encoder: str, root: Path) -> Path:
    """The study's tokenizer files, written once under the checkpoint root and copied into each checkpoint."""
    target = root / "tokenizer"
    if target.is_dir():
        return target
    from transformers import AutoTokenizer

    with disk_errors(root, "checkpoint_dir", "the tokenizer files"):
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tokenizer-", dir=root))
        try:
            AutoTokenizer.from_pretrained(encoder).save_pretrained(tmp)
            os.replace(tmp, target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not target.is_dir():  # another worker may have won the race
                raise
    return target


def verify_weights(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Re-read the safetensors file and compare every tensor with what was meant to be written."""
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        missing = [k for k in state if k not in keys and not _tied(k)]
        if missing:
            raise RuntimeError(f"checkpoint {path} lacks {len(missing)} tensors, e.g. {missing[:3]}")
        for key in keys:
            stored = f.get_tensor(key)
            if key in state and not torch.equal(stored, state[key].to(stored.dtype)):
                raise RuntimeError(f"checkpoint {path}: tensor {key} differs from the trained weights")


def _tied(key: str) -> bool:
    """Weights transformers may drop on save because they are shared with another tensor."""
    return key.endswith(("position_ids", "decoder.weight", "decoder.bias"))


def save_checkpoint(model: Any, state: dict[str, torch.Tensor], tokenizer_dir: Path, target: Path) -> Path:
    """Write a Hugging Face folder (safetensors weights, config, tokenizer) atomically; verify it reads back."""
    with disk_errors(target.parent, "checkpoint_dir", f"the checkpoint {target.name}"):  # full, read-only: stop
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            model.load_state_dict(state)
            with quiet_transformers():  # no "Writing model shards" bar over our progress display
                model.save_pretrained(tmp, safe_serialization=True)
            for item in tokenizer_dir.iterdir():
                shutil.copy2(item, tmp / item.name)
            verify_weights(tmp / WEIGHTS_FILE, state)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def checkpoint_dir(study: optuna.Study, trial: FrozenTrial, root: Path | None = None) -> Path | None:
    """Where a trial's checkpoint lives (`root` overrides the folder recorded with the study)."""
    name = read_trial(trial).checkpoint
    base = root or read_study(study).checkpoint_dir
    return Path(base) / name if name and base else None


def is_kept(study: optuna.Study, trial: FrozenTrial, root: Path | None = None) -> bool:
    path = checkpoint_dir(study, trial, root)
    return bool(path and (path / WEIGHTS_FILE).is_file())


def prune_checkpoints(study: optuna.Study, keep: int) -> list[int]:
    """Delete every checkpoint outside the study-wide top `keep` completed trials, except the best run of each
    re-evaluated configuration (what `sweep export --by mean` exports); returns the trial numbers."""
    deleted = []
    trials, maximize = study.get_trials(deepcopy=False), maximizes(study)
    protected = {t.number for t in seed_leaders(trials, maximize=maximize).values()}
    for trial in ranked(trials, maximize=maximize)[keep:]:
        if trial.number in protected:
            continue
        path = checkpoint_dir(study, trial)
        if path is not None and path.exists():
            shutil.rmtree(path, ignore_errors=True)
            deleted.append(trial.number)
    return deleted


def disk_usage(path: Path) -> int:
    """Bytes under `path` (0 when it does not exist)."""
    if not path.exists():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
