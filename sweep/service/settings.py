"""What `sweep serve` was started with: one frozen object, read by every route through `request.app.state`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request

DEFAULT_MAX_UPLOAD_MB = 200
TOKEN_ENV = "SWEEP_SERVICE_TOKEN"  # the bearer token, or SWEEP_SERVICE_TOKEN_FILE naming a file that holds it
TOKEN_FILE_ENV = "SWEEP_SERVICE_TOKEN_FILE"


@dataclass(frozen=True)
class ServiceSettings:
    storage_url: str  # the study store (a password in it never leaves the server)
    folder: Path  # the server's own folder: uploads, submitted specs, exports, reports, checkpoints
    data_roots: tuple[Path, ...] = ()  # folders whose files a submitted spec may name (resolved, symlinks followed)
    model_roots: tuple[Path, ...] = ()  # folders whose model folders a submitted spec's `encoder` may name
    token: str | None = field(default=None, repr=False)  # None: no token (only allowed on a loopback address)
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1024 * 1024
    refresh_seconds: float = 3.0  # how often the live page asks for news

    @property
    def uploads(self) -> Path:
        return self.folder / "uploads"

    @property
    def submissions(self) -> Path:
        return self.folder / "submissions"

    @property
    def exports(self) -> Path:
        return self.folder / "exports"


def settings_of(request: Request) -> ServiceSettings:
    """The server's settings (a FastAPI dependency)."""
    settings: ServiceSettings = request.app.state.settings
    return settings
