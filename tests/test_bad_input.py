"""Bad input, through the real CLI: one clear line naming the file/field/value, exit code 2, nothing written.

Each row of CASES is one row of the README's troubleshooting table. "Nothing written" is checked on the whole
temp folder: no new, changed or removed file (no store, no study row, no cache, no checkpoint).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from conftest import write_csv

from record import read_study
from sweep.cli import main


@dataclass
class Env:
    tmp: Path
    encoder: Path
    train: Path
    val: Path

    @property
    def url(self) -> str:
        return f"sqlite:///{self.tmp / 'sweeps.db'}"

    def spec(self, text: str | None = None, **changes: Any) -> str:
        """A valid spec with `changes` applied (dotted keys, None deletes), or the raw `text`."""
        path = self.tmp / "spec.yaml"
        if text is not None:
            path.write_text(text, encoding="utf-8")
            return str(path)
        spec: dict[str, Any] = {
            "name": "bad-input",
            "storage": self.url,
            "checkpoint_dir": str(self.tmp / "checkpoints"),
            "data": {"train": str(self.train), "validation": str(self.val), "cache_dir": str(self.tmp / "cache")},
            "model": {"encoder": str(self.encoder), "max_length": 32},
            "search": {"n_trials": 1, "sampler": "random", "pruner": "none", "space": {"epochs": 1}},
        }
        for dotted, value in changes.items():
            *parents, last = dotted.split(".")
            node = spec
            for key in parents:
                node = node.setdefault(key, {})
            if value is None:
                node.pop(last, None)
            else:
                node[last] = value
        path.write_text(yaml.safe_dump(spec), encoding="utf-8")
        return str(path)

    def rows(self, name: str, rows: list[tuple[str, str]], delimiter: str = ",") -> str:
        path = self.tmp / name
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, delimiter=delimiter)
            writer.writerow(("text", "label"))
            writer.writerows(rows)
        return str(path)

    def other_study(self) -> None:
        """A store holding one unrelated study (no training needed)."""
        optuna.create_study(study_name="other", storage=self.url)


def _train_rows(env: Env) -> list[tuple[str, str]]:
    with env.train.open(newline="", encoding="utf-8") as fh:
        return [(r["text"], r["label"]) for r in csv.DictReader(fh)]


def _empty_file(env: Env) -> list[str]:
    (env.tmp / "empty.csv").write_bytes(b"")
    return ["run", env.spec(**{"data.train": str(env.tmp / "empty.csv")})]


def _unreadable(env: Env) -> list[str]:
    (env.tmp / "folder.csv").mkdir()
    return ["run", env.spec(**{"data.train": str(env.tmp / "folder.csv")})]


def _not_utf8(env: Env) -> list[str]:
    (env.tmp / "latin1.csv").write_bytes("text,label\nqu'est-ce que c'est un café,DESC\n".encode("latin-1"))
    return ["run", env.spec(**{"data.train": str(env.tmp / "latin1.csv")})]


def _wrong_delimiter(env: Env) -> list[str]:
    return ["run", env.spec(**{"data.train": env.rows("semicolons.csv", _train_rows(env), delimiter=";")})]


def _single_class(env: Env) -> list[str]:
    rows = [(t, "HUM") for t, _ in _train_rows(env)]
    return ["run", env.spec(**{"data.train": env.rows("one.csv", rows), "data.validation": None})]


def _class_too_small(env: Env) -> list[str]:
    rows = [r for r in _train_rows(env) if r[1] != "LOC"] + [("Where is Lima ?", "LOC")]
    return ["run", env.spec(**{"data.train": env.rows("small.csv", rows), "data.validation": None})]


def _unseen_validation_label(env: Env) -> list[str]:
    with env.val.open(newline="", encoding="utf-8") as fh:
        rows = [(r["text"], r["label"]) for r in csv.DictReader(fh)] + [("How many feet in a mile ?", "NUM")]
    return ["run", env.spec(**{"data.validation": env.rows("val_num.csv", rows)})]


def _name_clash(env: Env) -> list[str]:
    assert main(["run", env.spec()]) == 0  # the study exists (one trial) before the snapshot
    return ["run", env.spec(**{"model.max_length": 64})]


def _headerless(env: Env) -> list[str]:
    """TREC written as AG News ships: label first, no header row."""
    path = env.tmp / "headerless.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows((label, text) for text, label in _train_rows(env))
    return ["run", env.spec(**{"data.train": str(path), "data.validation": None})]


def _score_labels(env: Env) -> list[str]:
    """STS-B's similarity scores under a classification spec (`task:` forgotten)."""
    rows = [(text, f"{(i * 0.37) % 5:.3f}") for i, (text, _) in enumerate(_train_rows(env))]
    return ["run", env.spec(**{"data.train": str(write_csv(env.tmp / "scores.csv", rows)), "data.validation": None})]


def _config_only_encoder(env: Env) -> list[str]:
    folder = env.tmp / "config-only"
    folder.mkdir()
    (folder / "config.json").write_bytes((env.encoder / "config.json").read_bytes())
    return ["run", env.spec(**{"model.encoder": str(folder)})]


def _empty_encoder(env: Env) -> list[str]:
    (env.tmp / "empty-model").mkdir()
    return ["run", env.spec(**{"model.encoder": str(env.tmp / "empty-model")})]


def _not_a_database(env: Env) -> list[str]:
    (env.tmp / "sweeps.db").write_text("notes, not a database\n", encoding="utf-8")
    return ["run", env.spec()]


def _checkpoint_dir_on_a_file(env: Env) -> list[str]:
    (env.tmp / "afile").write_text("notes\n", encoding="utf-8")
    return ["run", env.spec(checkpoint_dir=str(env.tmp / "afile" / "ck"))]


def _store_under_a_file(env: Env) -> list[str]:
    (env.tmp / "afile").write_text("notes\n", encoding="utf-8")
    return ["run", env.spec(storage=f"sqlite:///{env.tmp / 'afile' / 's.db'}")]


def _png_on_a_file(env: Env) -> list[str]:
    env.other_study()
    (env.tmp / "afile").write_text("notes\n", encoding="utf-8")
    return ["report", "other", "--storage", env.url, "--out", str(env.tmp / "r.html"), "--png", str(env.tmp / "afile")]


def _unknown_for(command: str) -> Callable[[Env], list[str]]:
    def args(env: Env) -> list[str]:
        env.other_study()
        extra = ["--out", str(env.tmp / "out")] if command == "export" else []
        return [command, "nope", "--storage", env.url, *extra]

    return args


# (id, prepare: env -> CLI args, fragments the error lines must contain: the field with its message, the value
# and, where there is one, the suggestion); one line each, but for the cases in LINES
LINES = {"schema problem and a missing column": 2}
CASES: list[tuple[str, Callable[[Env], list[str]], list[str]]] = [
    ("missing data file", lambda e: ["run", e.spec(**{"data.train": str(e.tmp / "nope.csv")})],
     ["data.train: file not found: ", "/nope.csv"]),
    ("empty data file", _empty_file, ["data.train: empty.csv is empty", "needs a header line and at least one row"]),
    ("unreadable data file (a folder)", _unreadable, ["data.train: ", "/folder.csv is a directory, not a file"]),
    ("non-UTF-8 data file", _not_utf8, ["data.train: latin1.csv is not valid UTF-8", "byte 0xe9", "(line 2)"]),
    ("wrong delimiter", _wrong_delimiter,
     ["data.train: semicolons.csv looks semicolon-separated", "(header 'text;label')", "save it with commas"]),
    ("missing column", lambda e: ["run", e.spec(**{"data.label_column": "lable", "data.validation": None})],
     ["data.label_column: no such column 'lable'", "(columns: text, label)", "did you mean 'label'?"]),
    ("a single class", _single_class, ["data.train: training data has 1 class ('HUM')", "at least 2"]),
    ("a class too small for both splits", _class_too_small,
     ["data.train: class 'LOC' has only 1 row", "at least 2 per class"]),
    ("validation label unseen in training", _unseen_validation_label,
     ["data.validation: class 'NUM' has 1 row in validation but none in training"]),
    ("the training file as validation", lambda e: ["run", e.spec(**{"data.validation": str(e.train)})],
     ["data.validation: every training text is also in the validation data (", "are both the same file?"]),
    ("malformed YAML", lambda e: ["run", e.spec("name: [unclosed\ndata: {train: x.csv}\n")],
     ["spec.yaml: line 2, column 5: malformed YAML", "expected ',' or ']'"]),
    ("a key given twice", lambda e: ["run", e.spec("name: a\nsearch: {n_trials: 3}\nsearch: {sampler: tpe}\n")],
     ["spec.yaml: line 3, column 1: the key 'search' appears twice in one mapping (lines 2 and 3)", "merge them"]),
    ("unknown key", lambda e: ["run", e.spec(**{"data.lable": "label"})],
     ["data.lable: unknown key", "(allowed: train, validation, "]),
    ("wrong type", lambda e: ["run", e.spec(**{"search.n_trials": "many"})],
     ["search.n_trials: Input should be a valid integer", "got 'many'"]),
    ("low > high", lambda e: ["run", e.spec(**{"search.space.learning_rate": {"low": 1e-3, "high": 1e-5}})],
     ["search.space.learning_rate: low <= high must hold, got low=0.001, high=1e-05"]),
    ("log with low <= 0", lambda e: ["run", e.spec(
        **{"search.space.learning_rate": {"low": 0.0, "high": 1e-3, "log": True}})],
     ["search.space.learning_rate: log: true needs low > 0, got low=0.0"]),
    ("empty choices", lambda e: ["run", e.spec(**{"search.space.batch_size": []})],
     ["search.space.batch_size: empty list of choices"]),
    ("unknown sampler", lambda e: ["run", e.spec(**{"search.sampler": "bayes"})],
     ["search.sampler: must be one of 'tpe', 'random', 'grid', 'gp' or 'qmc', got 'bayes'"]),
    ("unknown pruner", lambda e: ["run", e.spec(**{"search.pruner": "asha"})],
     ["search.pruner: must be one of 'median', 'hyperband', 'successive_halving', 'percentile' or 'none', got 'asha'"]),
    ("pruning warm-up with a pruner that has rungs", lambda e: ["run", e.spec(
        **{"search.pruner": "hyperband", "search.prune_after_epochs": 1})],
     ["search: prune_after_epochs applies to the median and percentile pruners, not 'hyperband'",
      "choose pruner: median"]),
    ("unreachable storage URL", lambda e: ["run", e.spec(storage="postgresql+psycopg://sweep:pw@127.0.0.1:1/sweeps")],
     ["storage: cannot reach", "sweep:***@127.0.0.1:1/sweeps"]),
    ("storage URL with an unescaped @ in its password",
     lambda e: ["run", e.spec(storage="postgresql+psycopg://sweep:pa@ss@127.0.0.1:1/sweeps")],
     ["storage: the password in 'postgresql+psycopg://sweep:***@127.0.0.1:1/sweeps' holds an @", "as %40"]),
    ("storage URL with a port that is no number",
     lambda e: ["status", "s", "--storage", "postgresql+psycopg://sweep:pw@127.0.0.1:pg/sweeps"],
     ["--storage: the port in 'postgresql+psycopg://sweep:***@127.0.0.1:pg/sweeps' is not a number"]),
    ("storage URL without its scheme", lambda e: ["status", "s", "--storage", "sweep:pw@127.0.0.1/sweeps"],
     ["--storage: not a database URL: 'sweep:***@127.0.0.1/sweeps'", "it has no scheme"]),
    ("storage URL with a bad scheme", lambda e: ["run", e.spec(storage="mongodb://localhost/sweeps")],
     ["storage: unsupported scheme 'mongodb' in 'mongodb://localhost/sweeps'"]),
    ("Heroku-style postgres:// URL", lambda e: ["run", e.spec(storage="postgres://sweep:pw@db.example.com/sweeps")],
     ["storage", "'postgres://'", "write postgresql+psycopg://sweep:***@db.example.com/sweeps"]),
    ("PostgreSQL driver not installed", lambda e: ["run", e.spec(storage="postgresql+pg8000://sweep:pw@db/sweeps")],
     ["storage", "'pg8000'", "is not installed: pip install 'sweep[postgres]'"]),
    ("checkpoint_dir under a file", _checkpoint_dir_on_a_file,
     ["checkpoint_dir: cannot keep checkpoints in ", "afile is a file, so no folder can be made there"]),
    ("SQLite store under a file", _store_under_a_file,
     ["storage: ", "afile is a file, not a folder: no SQLite store can go under it"]),
    ("report --png on a file", _png_on_a_file,
     ["--png: ", "afile is a file: give a folder for the PNG files (it is made if missing)"]),
    ("store file that is not a database", _not_a_database,
     ["storage", "sweeps.db: not a SQLite database"]),
    ("status when the server does not answer",
     lambda e: ["status", "s", "--storage", "postgresql+psycopg://sweep:pw@127.0.0.1:1/sweeps"],
     ["storage", "127.0.0.1:1", "connection refused"]),
    ("encoder path that does not exist", lambda e: ["run", e.spec(**{"model.encoder": str(e.tmp / "no-model")})],
     ["model.encoder: no such directory: ", "/no-model"]),
    ("schema problem and a missing column", lambda e: ["run", e.spec(
        **{"search.n_trials": "many", "data.label_column": "lable", "data.validation": None})],
     ["search.n_trials", "'many'", "data.label_column", "no such column 'lable'"]),
    ("CSV without a header row", _headerless,
     ["data.train", "headerless.csv looks like it has no header row", "data.columns: [label, text]"]),
    ("data.columns for a file with a header row", lambda e: ["run", e.spec(
        **{"data.columns": ["text", "label"], "data.validation": None})],
     ["data.columns", "train.csv has a header row (text, label)", "remove data.columns"]),
    ("max_length above the encoder's limit", lambda e: ["run", e.spec(**{"model.max_length": 256})],
     ["model.max_length", "256 is above the limit", "128 tokens", "max_position_embeddings"]),
    ("encoder folder without weights", _config_only_encoder,
     ["model.encoder", "config-only has config.json but no weights", "model.safetensors"]),
    ("empty encoder folder", _empty_encoder, ["model.encoder", "empty-model is empty", "save_pretrained"]),
    ("study name with a slash", lambda e: ["run", e.spec(name="team/study")],
     ["name", "'team/study' may contain only letters, digits, '_', '.' and '-'"]),
    ("study name clash with a different spec", _name_clash,
     ["name: study 'bad-input' already exists", "(changed: model.max_length 32 -> 64)"]),
    ("status of an unknown study", _unknown_for("status"), ["study: no study named 'nope'", "(studies here: other)"]),
    ("report of an unknown study", _unknown_for("report"), ["study: no study named 'nope'", "(studies here: other)"]),
    ("export of an unknown study", _unknown_for("export"), ["study: no study named 'nope'", "(studies here: other)"]),
    ("an unknown task", lambda e: ["run", e.spec(task="nli")],
     ["task: unknown task 'nli' (available: text-classification, text-pair, token-classification, multi-label, "
      "regression); did you mean 'text-pair'?"]),
    ("scores in a classification label column", _score_labels,
     ["data.label_column: 'label' holds numbers with fractions", "distinct values, e.g. '0.370', '0.740'",
      "set `task: regression`"]),
    ("text-pair without a pair column", lambda e: ["run", e.spec(task="text-pair")],
     ["data.text_pair_column: required for task: text-pair"]),
    ("a pair column without task: text-pair", lambda e: ["run", e.spec(**{"data.text_pair_column": "label"})],
     ["data.text_pair_column: applies only to task: text-pair", "set task: text-pair"]),
    ("missing pair column", lambda e: ["run", e.spec(
        task="text-pair", **{"data.text_pair_column": "hypothesis", "data.validation": None})],
     ["data.text_pair_column: no such column 'hypothesis' in train.csv (columns: text, label)"]),
    ("val_fraction beside a validation file", lambda e: ["run", e.spec(**{"data.val_fraction": 0.2})],
     ["data.val_fraction: 0.2 would split data.train, and data.validation names the validation file: remove it"]),
    ("worker for an unknown study", _unknown_for("worker"),
     ["study: no study named 'nope'", "(studies here: other)", "create it first with `sweep run SPEC"]),
]  # fmt: skip


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")
            if p.is_file()}  # fmt: skip


def study_rows(env: Env) -> list[tuple[str, int]]:
    store = env.tmp / "sweeps.db"
    if not store.exists() or not store.read_bytes().startswith(b"SQLite format 3"):  # no store, or not a database
        return []
    storage = optuna.storages.RDBStorage(env.url)
    return [(s.study_name, len(storage.get_all_trials(s._study_id))) for s in storage.get_all_studies()]


@pytest.mark.parametrize(("case", "prepare", "fragments"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_one_line_and_nothing_written(
    case: str,
    prepare: Callable[[Env], list[str]],
    fragments: list[str],
    tmp_path: Path,
    tiny_bert: Path,
    labelled_csvs: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = Env(tmp_path, tiny_bert, *labelled_csvs)
    args = prepare(env)
    rows, files = study_rows(env), snapshot(tmp_path)
    capsys.readouterr()
    assert main(args) == 2, case
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]  # progress lines aside
    expected = LINES.get(case, 1)
    assert len(lines) == expected, f"{case}: expected {expected} error line(s), got {err.splitlines()}"
    line = "\n".join(lines)
    for fragment in fragments:
        assert fragment in line, f"{case}: {fragment!r} not in {line!r}"
    assert snapshot(tmp_path) == files, f"{case}: files changed"
    assert study_rows(env) == rows, f"{case}: a study or trial row was written"


def test_at_least_twenty_refused_cases_each_in_the_readme() -> None:
    assert len(CASES) >= 20
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Troubleshooting", 1)[1]
    for case, _, _ in CASES:
        assert f"| {case} |" in section, f"README troubleshooting table lacks {case!r}"


def test_dirty_data_is_handled_and_reported_not_refused(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    env = Env(tmp_path, tiny_bert, *labelled_csvs)
    rows = _train_rows(env)
    long_text = "What is " + " and ".join(["the name of the city"] * 20) + " ?"
    dirty = rows + [
        ("", "billing"),  # empty text
        ("Who wrote Hamlet ?", ""),  # missing label (NaN once read)
        rows[0],  # an exact duplicate
        ("Where is my parcel ?", "shipping"),
        ("Where is my parcel ?", "returns"),  # conflicting labels
        (long_text, "product"),  # longer than max_length 32: truncated
    ]
    train = write_csv(tmp_path / "dirty.csv", dirty)
    assert main(["run", env.spec(**{"data.train": str(train)})]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("data warning:")]
    text = "\n".join(warnings).lower()
    for fragment in ("missing text", "missing label", "duplicate row", "conflicting labels", "(2 rows)", "truncated"):
        assert fragment in text, f"no warning about {fragment}: {warnings}"
    storage = optuna.storages.RDBStorage(env.url)
    report = read_study(optuna.load_study(study_name="bad-input", storage=storage)).data_report
    cleaning = report["cleaning"]["train"]
    assert cleaning["missing_text"] + cleaning["empty_text"] == 1  # an empty CSV cell reads as missing
    assert (cleaning["missing_label"], cleaning["duplicates"]) == (1, 1)
    assert cleaning["conflicting_texts_total"] == 1 and cleaning["conflicting_rows"] == 2
    assert report["truncated"]["train"] >= 1
    assert report["num_train"] == len(rows) + 1  # the long text is kept (truncated); the dirty rows are not


def test_headerless_files_run_under_data_columns_with_two_text_columns(
    tmp_path: Path, tiny_bert: Path, labelled_csvs: tuple[Path, Path]
) -> None:
    env = Env(tmp_path, tiny_bert, *labelled_csvs)
    files = {}
    for split, source in (("train", env.train), ("validation", env.val)):
        with source.open(newline="", encoding="utf-8") as fh:
            rows = [(r["label"], *r["text"].split(" ", 1)) for r in csv.DictReader(fh)]
        files[split] = tmp_path / f"{split}-headerless.csv"
        with files[split].open("w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows(rows)
    spec = env.spec(
        **{
            "data.train": str(files["train"]),
            "data.validation": str(files["validation"]),
            "data.columns": ["label", "title", "description"],
            "data.text_column": ["title", "description"],
        }
    )
    assert main(["run", spec]) == 0
    study = optuna.load_study(study_name="bad-input", storage=env.url)
    report = read_study(study).data_report
    assert report["cleaning"]["train"]["rows_in"] == len(_train_rows(env))  # the first row is data, not a header


def test_a_yaml_merge_key_is_no_duplicate() -> None:
    """The duplicate-key check must leave YAML's merge keys working: a key beside `<<: *base` overrides on purpose."""
    from sweep.spec import read_spec_text

    text = b"a: &lr {low: 1.0e-5, high: 1.0e-3}\nb: {<<: *lr, low: 1.0e-4}\nc: {<<: [*lr]}\n"
    assert read_spec_text(text, source="spec.yaml") == {"a": {"low": 1e-5, "high": 1e-3},
                                                       "b": {"low": 1e-4, "high": 1e-3},
                                                       "c": {"low": 1e-5, "high": 1e-3}}  # fmt: skip
