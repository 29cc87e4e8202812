"""Store URLs and store errors, without opening a store.

- Which URL: `--storage`, else `$SWEEP_STORAGE`, else the spec's `storage:`, else `sqlite:///sweeps.db`.
- What is wrong with it before connecting: scheme, driver, SQLite file or folder.
- How it prints: never with its password (`safe_url`, `mask`).
- What a database error means: the server cannot be reached (retried), the disk refuses writes (stop at once:
  retrying cannot help), or the store cannot be opened at all (say why).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote_plus

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError

from sweep.errors import DiskError, SweepError, disk_fix

DEFAULT_STORAGE_URL = "sqlite:///sweeps.db"
STORAGE_ENV = "SWEEP_STORAGE"
SCHEMES = ("sqlite", "postgresql", "mysql")
POSTGRES_EXAMPLE = "postgresql+psycopg://USER:PASSWORD@HOST:5432/DATABASE"
INSTALL_POSTGRES = "pip install 'sweep[postgres]'"
SQLITE_HEADER = b"SQLite format 3\x00"

# Database messages that mean "the disk refuses writes" (SQLite's own words, PostgreSQL's and the OS's).
_REFUSED_WRITES = (
    ("database or disk is full", "no space left on device"),
    ("no space left on device", "no space left on device"),
    ("disk quota exceeded", "disk quota exceeded"),
    ("read-only file system", "read-only file system"),
    ("attempt to write a readonly database", "read-only file system or permission denied"),
    ("permission denied", "permission denied"),
)
# PostgreSQL SQLSTATEs with the same meaning: disk full, read-only transaction (a replica), insufficient privilege.
_REFUSED_SQLSTATES = {"53100": "no space left on device", "25006": "read-only", "42501": "permission denied"}


def choose_storage(option: str | None, spec_storage: str | None = None) -> tuple[str, str]:
    """The store URL and where it came from: `--storage`, then `$SWEEP_STORAGE`, then the spec's, then the default.

    An environment variable keeps a password out of shell history, `ps` and spec files.
    """
    if option:
        return option, "--storage"
    if os.environ.get(STORAGE_ENV):
        return os.environ[STORAGE_ENV], STORAGE_ENV
    if spec_storage:
        return spec_storage, "storage"
    return DEFAULT_STORAGE_URL, "storage"


# Query parameters that carry a secret (`?password=...`: libpq and psycopg take one there, as `sslpassword`)
SECRET_KEYS = r"(?:ssl)?password|passwd|pwd|secret|token|api_?key|access_token"
_QUERY_SECRET = re.compile(r"([?&;](?:" + SECRET_KEYS + r")=)([^&#;\s'\"]*)", re.IGNORECASE)
# A URL's user:password@ (with a scheme or a bare //): the password runs to the authority's LAST @, so one holding an
# unescaped @ (`u:pa@ss@host`) is masked whole, not shown from its @ on
_USERINFO = re.compile(r"(//[^:/?#@\s]*:)([^/?#\s]*)@")
# user:password@host with no scheme at all (a URL missing its `postgresql://`)
_BARE_USERINFO = re.compile(r"^([\w.%+-]+:)([^/?#\s]*)@")


def _secrets_of(url: str) -> set[str]:
    """Every password a URL holds, as written and URL-unquoted: the user:password@ part (to the authority's last @),
    SQLAlchemy's reading of it, and `?password=`-like query values."""
    from urllib.parse import unquote

    found: set[str] = set()
    userinfo = _USERINFO.search(url) or _BARE_USERINFO.match(url)
    if userinfo:
        found.add(userinfo.group(2))
    found.update(m.group(2) for m in _QUERY_SECRET.finditer(url))
    try:
        parsed = make_url(url)
        found.add(parsed.password or "")
        found.update(str(v) for k, v in parsed.query.items() if re.fullmatch(SECRET_KEYS, k, re.IGNORECASE))
    except (ArgumentError, ValueError):
        pass
    found |= {unquote(secret) for secret in found}
    return {secret for secret in found if secret}


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages (also a URL SQLAlchemy cannot parse): the user:password@ part
    and `?password=`-like query values. SQLAlchemy renders what it parses (a user `admin@server`, a password with /
    or #); the patterns serve what it cannot parse, or splits at a password's unescaped @."""
    try:
        parsed = make_url(url)
        if not (parsed.host and "@" in parsed.host):
            return _QUERY_SECRET.sub(r"\1***", parsed.render_as_string(hide_password=True))
    except (ArgumentError, ValueError):
        pass
    shown = _QUERY_SECRET.sub(r"\1***", url)
    shown = _USERINFO.sub(r"\1***@", shown)
    return _BARE_USERINFO.sub(r"\1***@", shown) if "//" not in shown else shown


def shown_store(url: str) -> str:
    """The URL for messages, masked (`safe_url`), with a relative SQLite file's absolute path after it: SQLite
    resolves `sqlite:///sweeps.db` against the folder the command runs in, so a run from another folder uses (or
    creates) another store, and the message says which file it is."""
    shown = safe_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        return shown
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" or Path(database).is_absolute():
        return shown
    return f"{shown} ({Path(database).resolve()})"


# A password shorter than this is masked where it stands in a URL or after `password=`, not wherever its letters
# occur: a short one is often a word ("sweep"), and replacing every copy of it garbled the messages around it
# ("run `*** reevaluate ...`") and, by which words turned into ***, told what it was.
BARE_SECRET_LENGTH = 8


def mask(text: str, url: str) -> str:
    """`text` (a driver's message, say) with the URL's passwords replaced by ***, as written or URL-quoted: in any
    URL's user:password@ part or `?password=` value, after `password=` (a connection string), and, for one of 8
    characters or more, wherever it occurs."""
    secrets = _secrets_of(url)
    for secret in sorted(secrets | {quote_plus(s) for s in secrets}, key=len, reverse=True):  # the longest first
        quoted = re.escape(secret)
        # after a key (`password=`, `'password': '`, `pwd:`), and as user:password@ without a scheme
        text = re.sub(r"((?:password|passwd|pwd)['\"]?\s*[=:]\s*['\"]?)" + quoted + r"(?![\w-])", r"\1***", text,
                      flags=re.IGNORECASE)  # fmt: skip
        text = re.sub(r"((?:^|[\s'\"(\[,])[\w.%+-]+:)" + quoted + "@", r"\1***@", text)
        text = text.replace(f":{secret}@", ":***@")  # as it stands in any URL, whatever its user looks like
        if len(secret) >= BARE_SECRET_LENGTH:
            text = text.replace(secret, "***")
    return _USERINFO.sub(r"\1***@", _QUERY_SECRET.sub(r"\1***", text))


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def storage_problems(url: str, *, field: str = "storage", must_exist: bool = False) -> list[tuple[str, str]]:
    """What is wrong with a storage URL, checked without connecting."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        missing = "; it has no scheme: begin it with postgresql+psycopg:// or sqlite:///" if "://" not in url else ""
        return [(field, f"not a database URL: {safe_url(url)!r} (e.g. sqlite:///sweeps.db or {POSTGRES_EXAMPLE})"
                        f"{missing}")]  # fmt: skip
    except ValueError:  # SQLAlchemy reads the port as an int: `host:notaport`
        return [(field, f"the port in {safe_url(url)!r} is not a number: write HOST:PORT with a port number, e.g. "
                        "localhost:5432, or leave `:PORT` out for the default")]  # fmt: skip
    if parsed.host and "@" in parsed.host:  # `u:pa@ss@host`: SQLAlchemy splits at the first @, the server is unknown
        return [(field, f"the password in {safe_url(url)!r} holds an @ that is not escaped: write each @ in it as %40 "
                        "(URL-quote the password, e.g. urllib.parse.quote_plus)")]  # fmt: skip
    if parsed.drivername.split("+")[0] == "postgres":  # Heroku's and libpq's spelling; SQLAlchemy refuses it
        fixed = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=True)
        return [(field, f"SQLAlchemy does not know the scheme 'postgres://' in {safe_url(url)!r}: write {fixed}")]
    backend = parsed.get_backend_name()
    if backend not in SCHEMES:
        return [(field, f"unsupported scheme '{parsed.drivername}' in {safe_url(url)!r} "
                        f"(use sqlite:///FILE or {POSTGRES_EXAMPLE})")]  # fmt: skip
    if backend == "sqlite":
        return _sqlite_problems(parsed, field=field, must_exist=must_exist)
    return _driver_problems(parsed, field=field)


def _sqlite_problems(parsed: URL, *, field: str, must_exist: bool) -> list[tuple[str, str]]:
    database = parsed.database or ""
    if parsed.host:  # sqlite://tmp/x.db: SQLAlchemy takes "tmp" for a host, drops it and opens x.db relative to here
        given = f"{parsed.host}/{database}" if database else parsed.host
        return [(field, f"{safe_url(str(parsed))!r} has two slashes after sqlite:, so {parsed.host!r} is read as a "
                        f"host and dropped: write sqlite:////{given} for the absolute path /{given}, or "
                        f"sqlite:///{given} for a path relative to the folder the command runs in")]  # fmt: skip
    if database in ("", ":memory:"):
        return [(field, "an in-memory SQLite store loses every trial: give a file, e.g. sqlite:///sweeps.db")]
    path = Path(database).resolve()
    if must_exist and not path.is_file():
        others = sorted(p.name for p in path.parent.glob("*.db") if p.is_file())[:5] if path.parent.is_dir() else []
        here = f"; stores in that folder: {', '.join(others)} (pass one as --storage sqlite:///FILE)" if others else ""
        if not path.parent.is_dir():
            what = "is a file, not a folder" if path.parent.exists() else "does not exist"
            return [(field, f"no study store at {path}: its folder {path.parent} {what} (check --storage or "
                            "SWEEP_STORAGE)")]  # fmt: skip
        return [(field, f"no study store at {path} (run `sweep run SPEC` first, or point --storage or SWEEP_STORAGE "
                        f"at an existing store){here}")]  # fmt: skip
    if not path.parent.is_dir():
        on_file = next((q for q in path.parents if q.exists()), None)
        if on_file is not None and not on_file.is_dir():  # `afile/s.db`: the folder is a file, not missing
            return [(field, f"{on_file} is a file, not a folder: no SQLite store can go under it (change "
                            f"{safe_url(str(parsed))!r})")]  # fmt: skip
        return [(field, f"folder does not exist: {path.parent} (create it or change {safe_url(str(parsed))!r})")]
    if not path.exists() and not os.access(path.parent, os.W_OK | os.X_OK):  # before any cache or data is written
        return [(field, f"cannot create the SQLite store {path}: its folder {path.parent} is not writable (choose a "
                        "folder you can write to)")]  # fmt: skip
    if path.is_dir():
        return [(field, f"cannot open the SQLite store {path}: it is a folder; give a file, e.g. {path}/sweeps.db")]
    if path.is_file():
        try:
            with path.open("rb") as fh:
                header = fh.read(len(SQLITE_HEADER))
        except OSError as exc:
            return [(field, f"cannot open the SQLite store {path}: {exc.strerror or exc}")]
        if header and header != SQLITE_HEADER:
            return [(field, f"cannot open the SQLite store {path}: not a SQLite database (it holds something "
                            "else): give another file name, or move that file away")]  # fmt: skip
    return []


def _driver_problems(parsed: URL, *, field: str) -> list[tuple[str, str]]:
    """Is the URL's database driver installed? (Importing it connects to nothing.)"""
    try:
        parsed.get_dialect().import_dbapi()
    except ArgumentError:  # SQLAlchemy knows no such driver
        return [(field, f"unknown database driver '{parsed.drivername}' in {safe_url(str(parsed))!r} "
                        f"(for PostgreSQL write {POSTGRES_EXAMPLE})")]  # fmt: skip
    except ImportError as exc:
        module = exc.name or parsed.get_driver_name()
        package = PIP_NAMES.get(module, module)  # the import name is not always the package's (MySQLdb)
        hint = INSTALL_POSTGRES if parsed.get_backend_name() == "postgresql" else f"pip install {package}"
        if parsed.drivername != "postgresql+psycopg" and parsed.get_backend_name() == "postgresql":
            hint += f" and write the URL as {POSTGRES_EXAMPLE}"
        return [(field, f"the database driver {module!r} for {safe_url(str(parsed))} is not installed: {hint}")]
    return []


# Database driver modules whose pip package has another name
PIP_NAMES = {"MySQLdb": "mysqlclient", "psycopg2": "psycopg2-binary", "pymysql": "PyMySQL"}


def reachability_problems(url: str, *, field: str = "storage", timeout_s: int = 10) -> list[tuple[str, str]]:
    """For a database server: can we connect at all? Checked before anything is written (SQLite: nothing to do)."""
    if is_sqlite(url):
        return []
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": timeout_s})
    except ImportError:
        return storage_problems(url, field=field)
    try:
        with engine.connect():
            return []
    except Exception as exc:  # OperationalError and friends: refused, unknown host, bad password, no database
        return [(field, f"cannot reach {safe_url(url)}: {open_reason(exc, url)}")]
    finally:
        engine.dispose()


def engine_kwargs(url: str) -> dict[str, object]:
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return {"connect_args": {"timeout": 60}}
    # Trials can be silent for an hour: test each pooled connection before use.
    return {"pool_pre_ping": True, "pool_recycle": 3600}


def read_only_url(url: str) -> tuple[str, dict[str, object]]:
    """The URL and engine options that open the store read-only where the backend allows it."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = Path(parsed.database or "").resolve()
        return f"sqlite:///file:{path}?mode=ro&uri=true", {"connect_args": {"timeout": 60, "uri": True}}
    if backend == "postgresql":
        return url, {"pool_pre_ping": True, "connect_args": {"options": "-c default_transaction_read_only=on"}}
    return url, engine_kwargs(url)


def _dbapi_errors(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions it was raised from (Optuna wraps SQLAlchemy's errors, which wrap the driver's)."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        orig = getattr(seen, "orig", None)
        if isinstance(orig, BaseException) and orig not in chain:
            chain.append(orig)
        seen = seen.__cause__ or seen.__context__
    return chain


def _innermost(exc: BaseException) -> BaseException:
    """The driver's own error behind Optuna's and SQLAlchemy's wrappers (or `exc` itself)."""
    chain = _dbapi_errors(exc)
    own = [e for e in chain if not type(e).__module__.startswith(("sqlalchemy", "optuna"))]
    return own[-1] if own else chain[-1]


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


def open_reason(exc: BaseException, url: str) -> str:
    """Why a store could not be opened, in a few words, password masked."""
    text = _first_line(_innermost(exc))
    lowered = text.lower()
    refused = write_refused(exc)
    if refused:
        reason = refused
    elif "file is not a database" in lowered:
        reason = "not a SQLite database"
    elif "connection refused" in lowered:
        reason = "connection refused (start the server, or fix the host and port)"
    elif "password authentication failed" in lowered or "authentication failed" in lowered:
        reason = f"authentication failed for user {make_url(url).username!r} (check the user name and password)"
    elif "could not translate host name" in lowered or "name or service not known" in lowered:
        reason = f"unknown host {make_url(url).host!r}"
    elif "timeout expired" in lowered:
        reason = "no answer within the timeout (is the host reachable and the port open?)"
    else:
        reason = text
    return mask(reason, url)


def write_refused(exc: BaseException) -> str | None:
    """'no space left on device', 'read-only ...', 'permission denied' if the disk under the store refuses a
    write (retrying cannot help); None for any other error."""
    for error in _dbapi_errors(exc):
        sqlstate = getattr(error, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate in _REFUSED_SQLSTATES:
            return _REFUSED_SQLSTATES[sqlstate]
        lowered = str(error).lower()
        for fragment, reason in _REFUSED_WRITES:
            if fragment in lowered:
                return reason
    return None


def lost_connection(exc: BaseException) -> BaseException | None:
    """The database error behind `exc` if it means 'cannot reach the database' (not a bad statement, not a disk
    that refuses writes, not a file that is no database)."""
    if write_refused(exc) is not None:
        return None
    for error in _dbapi_errors(exc):
        if "file is not a database" in str(error).lower():
            return None
        if isinstance(error, OperationalError | InterfaceError):
            return error
        if isinstance(error, DBAPIError) and error.connection_invalidated:
            return error
    return None


def store_folder(url: str) -> str:
    """Where a store keeps its data, for messages: the SQLite file's folder, or the server."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return str(Path(parsed.database or "").resolve().parent)
    return f"the database server {parsed.host or 'localhost'}:{parsed.port or 5432}"


def refused_write_error(url: str, exc: BaseException, reason: str) -> DiskError:
    """The one line for a store whose disk refuses writes: the folder, the reason, what to do."""
    detail = mask(_first_line(_innermost(exc)), url)
    return DiskError(
        [
            (
                "storage",
                f"cannot write to the store {safe_url(url)} in {store_folder(url)}: {reason} ({detail}); "
                f"{disk_fix(reason, 'it')}, then run the same command again",
            )
        ]
    )


def open_error(url: str, exc: BaseException) -> SweepError:
    """The one line for a store that cannot be opened: which store, and why (refused, password, not a database)."""
    refused = write_refused(exc)
    if refused is not None:
        return refused_write_error(url, exc, refused)
    if isinstance(exc, ImportError):  # a driver storage_problems did not foresee (a dependency of it, say)
        return SweepError(storage_problems(url) or [("storage", f"cannot open {safe_url(url)}: {mask(str(exc), url)}")])
    if is_sqlite(url):
        where = f"the SQLite store {Path(make_url(url).database or '').resolve()}"
    else:
        where = f"the store {safe_url(url)}"
    return SweepError([("storage", f"cannot open {where}: {open_reason(exc, url)}")])
