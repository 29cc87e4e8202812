"""A warm start: the study's first trial tries a configuration known to work for the encoder's family.

Published fine-tuning recipes agree on most settings and differ mainly in the learning rate, which falls as the encoder
gets wider: BERT's recipe (Devlin et al. 2019, appendix A.3: batch 16 or 32, 2-4 epochs, learning rates 2e-5 to 5e-5
for BERT-base) and RoBERTa's (Liu et al. 2019: 1e-5 to 3e-5, 6% warmup, weight decay 0.01) for base-width encoders;
the small BERTs of Turc et al. 2019 and ELECTRA-small (Clark et al. 2020: 3e-4) train best at 1e-4 or more. The
configuration is placed inside the study's own space (a range clamps it, a list of choices takes the nearest one, a
fixed value stays), queued with Optuna's `enqueue_trial` when the study is created, and counts as one of its trials;
the sampler's own draws follow. Grid search covers its grid in its own order and gets no warm start.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweep.space import searched
from sweep.spec import RangeParam, SpaceSpec

# RoBERTa's recipe (smaller learning rates at base width) for the encoders trained its way.
ROBERTA_LIKE = ("roberta", "xlm-roberta", "camembert", "deberta", "deberta-v2", "mpnet")


@dataclass(frozen=True)
class WarmStart:
    """The first configuration to try, already inside the space, and where it comes from (for the output)."""

    params: dict[str, Any]  # the searched parameters only, as the trial suggests them
    source: str

    def describe(self) -> str:
        shown = ", ".join(f"{k}={v:.2g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.params.items())
        return f"{shown} ({self.source})"


def encoder_shape(encoder: str) -> tuple[str, int] | None:
    """The encoder's model_type and hidden size from its config.json (a local folder, or a hub name that is
    cached), or None when it cannot be read."""
    folder = Path(encoder)
    try:
        if folder.is_dir():
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        else:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(encoder).to_dict()
    except Exception:  # no readable config: the study simply starts with the sampler's own draws
        return None
    width = config.get("hidden_size", config.get("dim", config.get("d_model")))
    kind = config.get("model_type")
    if not isinstance(width, int) or not isinstance(kind, str):
        return None
    return kind, width


def known_good(model_type: str, hidden_size: int) -> tuple[dict[str, float | int], str]:
    """A configuration the published recipes suggest for an encoder of this family and width, and why."""
    if hidden_size <= 512:
        learning_rate, why = 1e-4, f"width {hidden_size}: small encoders train best near 1e-4 (Turc et al. 2019)"
    elif hidden_size <= 768 and model_type in ROBERTA_LIKE:
        learning_rate, why = 2e-5, f"width {hidden_size}, {model_type}: RoBERTa's recipe (Liu et al. 2019)"
    elif hidden_size <= 768:
        learning_rate, why = 5e-5, f"width {hidden_size}: BERT-base's recipe (Devlin et al. 2019)"
    else:
        learning_rate, why = 2e-5, f"width {hidden_size}: large encoders need small steps (Devlin et al. 2019)"
    config = {"learning_rate": learning_rate, "batch_size": 16, "epochs": 3, "weight_decay": 0.01,
              "warmup_ratio": 0.06, "label_smoothing": 0.0, "dropout": 0.1}  # fmt: skip
    return config, f"known-good for a {model_type} encoder of {why}"


def inside(param: RangeParam | list[int | float], value: float) -> int | float:
    """`value` moved into a searched parameter: the nearest choice, or clamped into the range and onto its step."""
    if isinstance(param, list):
        numbers = [float(choice) for choice in param]
        distance = [abs(math.log(c / value)) if c > 0 and value > 0 else abs(c - value) for c in numbers]
        return param[distance.index(min(distance))]
    low, high = float(param.low), float(param.high)
    placed = min(max(value, low), high)
    if param.step is not None:
        placed = low + round((placed - low) / float(param.step)) * float(param.step)
        placed = min(placed, high)
    return int(round(placed)) if param.is_int else float(placed)


def warm_start(space: SpaceSpec, encoder: str, accumulate: int = 1) -> WarmStart | None:
    """The warm start for this space and encoder; None when the encoder's family cannot be read or nothing is
    searched. The recipes' batch is per optimizer step: with `accumulate` batches summed per step
    (trainer.accumulate_grad_batches), each batch is that much smaller."""
    shape = encoder_shape(encoder)
    wanted = searched(space)
    if shape is None or not wanted:
        return None
    config, source = known_good(*shape)
    if accumulate > 1 and "batch_size" in wanted:
        config["batch_size"] = max(1, round(config["batch_size"] / accumulate))
        source += f"; batch 16 per optimizer step, {accumulate} batches summed per step"
    return WarmStart({name: inside(param, config[name]) for name, param in wanted.items()}, source)
