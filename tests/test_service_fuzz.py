"""The service's OpenAPI schema fuzzed with schemathesis (in process, no network): whatever a client sends, no 5xx
answer, and every error is JSON with a `detail`. Bounded: a few examples per operation, the file well under a minute.

The store holds one queued study (no trial run), so stop, resume, detail, report and export meet a real study as
well as unknown names; its export answers 400 (no checkpoint yet) quickly, so nothing is left out.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from conftest import quickstart_subset, split_per_class, write_csv
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from sweep.service.app import create_app
from sweep.service.settings import ServiceSettings

EXAMPLES = 12


ROOT = Path(tempfile.mkdtemp(prefix="sweep-fuzz-"))  # the schema is loaded at import, before any fixture
SERVICE = ServiceSettings(storage_url=f"sqlite:///{ROOT / 'studies.db'}", folder=ROOT / "server",
                          data_roots=(ROOT / "data",), max_upload_bytes=64 * 1024)  # fmt: skip
APP = create_app(SERVICE)
schema = schemathesis.openapi.from_asgi("/docs/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def store() -> Iterator[None]:
    """One queued study (the packaged encoder's tokenizer; no trial runs), removed with the folder afterwards."""
    train, val = split_per_class(quickstart_subset(12, seed=7), 3)
    write_csv(ROOT / "data" / "train.csv", train)
    write_csv(ROOT / "data" / "val.csv", val)
    spec = {"name": "fuzzed", "data": {"train": "train.csv", "validation": "val.csv"},
            "model": {"encoder": "minilm", "max_length": 16}, "search": {"n_trials": 2}}  # fmt: skip
    with TestClient(APP) as client:
        created = client.post("/api/studies", data={"spec_text": yaml.safe_dump(spec)})
        assert created.status_code == 201, created.text
    yield
    shutil.rmtree(ROOT, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_server_error_and_every_error_is_json(case: Any) -> None:
    response = case.call()
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    if response.status_code >= 400:
        kind = response.headers.get("content-type", [""])  # schemathesis keeps each header as a list
        assert (kind[0] if isinstance(kind, list) else kind).startswith("application/json"), response.text
        body = response.json()
        assert isinstance(body.get("detail"), str) and body["detail"], body
