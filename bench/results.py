"""The results store: one SQLite file (standard library), WAL mode, one transaction per finished entry.

An entry is one (suite, row, seed) evaluated under one configuration; its `config_hash` covers
everything that decides the numbers (model, data, budget, seed, training recipe). Completed entries
are never run again, so a crashed or killed `run-all` resumes where it stopped and nothing finished
is lost or duplicated (UNIQUE(suite, row, seed, config_hash)). Each result keeps its provenance: git
commit, torch / CUDA / GPU, device, start and end time.

Complexity figures (parameters, MACs at an input size) are deterministic and cached in their own table.
A file that is not an alignbench store (another SQLite database, or not SQLite at all) or a damaged one
(`PRAGMA integrity_check` when the store is opened) is refused with a clear error and never written to.
Readers (`report`, `results`) open the store read-only and also work on read-only media and full disks.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignbench.bench.errors import UserError
from alignbench.bench.io import to_jsonable

log = logging.getLogger(__name__)

APPLICATION_ID = 0x41424E43  # "ABNC": PRAGMA application_id marks our databases
SCHEMA_VERSION = 1
_SQLITE_MAGIC = b"SQLite format 3\x00"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY,
    suite TEXT NOT NULL,
    row TEXT NOT NULL,
    seed INTEGER NOT NULL,
    model TEXT NOT NULL,
    task TEXT NOT NULL,
    budget TEXT NOT NULL,
    data TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    config TEXT NOT NULL,
    metrics TEXT NOT NULL,
    device TEXT,
    git_commit TEXT,
    torch TEXT,
    cuda TEXT,
    gpu TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    duration_s REAL NOT NULL,
    UNIQUE (suite, row, seed, config_hash)
);
CREATE TABLE IF NOT EXISTS complexity (
    model TEXT NOT NULL,
    height INTEGER NOT NULL,
    width INTEGER NOT NULL,
    figures TEXT NOT NULL,
    PRIMARY KEY (model, height, width)
);
"""


@dataclass
class ResultRecord:
    """One finished entry with its provenance; `metrics` maps metric keys to numbers (or dicts)."""

    suite: str
    row: str
    seed: int
    model: str
    task: str
    budget: str
    data: str
    config_hash: str
    config: dict
    metrics: dict
    started_at: str
    finished_at: str
    duration_s: float
    device: str | None = None
    git_commit: str | None = None
    torch: str | None = None
    cuda: str | None = None
    gpu: str | None = None
    id: int | None = field(default=None, compare=False)


class ResultsStore:
    """Open (or create) a results database; refuses foreign or corrupt files before writing anything.

    Opening checks, in this order: the file is a SQLite database with our application id (read from the
    header on disk, so a foreign file is never opened by SQLite at all), its schema is not newer than ours,
    and `PRAGMA integrity_check` (every page of every table and index, not only a count) finds no damage.
    Any failure is one `UserError` line naming the file, raised before anything is written.

    `read_only` (the default when `create` is False: `report`, `results`) opens the file with SQLite's
    `mode=ro`: nothing is written, the journal mode is left as it is. When even that cannot open it
    (read-only media, or a full disk where SQLite cannot create its `-shm` index), the store is read as
    `immutable`, which is exact as long as no write-ahead log holds entries not yet in the main file.
    """

    def __init__(self, path: str | Path, create: bool = True, read_only: bool | None = None) -> None:
        self.path = Path(path)
        self.read_only = not create if read_only is None else read_only
        exists = self.path.exists()
        if exists:
            self._check_is_ours_on_disk()
        elif not create or self.read_only:
            raise UserError(f"{self.path}: results database not found")
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise UserError(f"{self.path.parent}: cannot create the results folder ({error.strerror or error})") from None
        try:
            self._connection = self._connect()
            self._connection.row_factory = sqlite3.Row
            self._connection.execute("PRAGMA busy_timeout = 30000")
            if exists:
                self._check_contents()
            else:
                self._initialise()
            if not self.read_only:
                self._connection.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as error:  # locked, read-only media, full disk, ...
            raise UserError(f"{self.path}: cannot open the results database for {'reading' if self.read_only else 'writing'} ({error})") from None
        except sqlite3.DatabaseError as error:  # damaged pages
            raise UserError(f"{self.path}: not a usable SQLite results database ({error}); left untouched") from None

    def _connect(self) -> sqlite3.Connection:
        if not self.read_only:
            return sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        uri = self.path.absolute().as_uri()  # percent-encodes '?' and '#' in file names
        try:
            connection = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30.0, isolation_level=None)
            connection.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()  # opens the file (and its WAL index)
            return connection
        except sqlite3.OperationalError as error:
            wal = self.path.with_name(self.path.name + "-wal")
            if wal.exists() and wal.stat().st_size > 0:
                raise UserError(
                    f"{self.path}: cannot be opened read-only ({error}) and its write-ahead log {wal.name} holds "
                    "entries not yet in the main file; open it once where its folder is writable"
                ) from None
        log.info("%s: read as immutable (read-only media or full disk)", self.path)
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)

    def _check_is_ours_on_disk(self) -> None:
        if self.path.is_dir():
            raise UserError(f"{self.path}: is a directory, expected a results database file")
        try:
            with open(self.path, "rb") as handle:
                header = handle.read(100)
        except OSError as error:
            raise UserError(f"{self.path}: cannot read ({error.strerror or error})") from None
        if len(header) == 0:
            raise UserError(f"{self.path}: empty file, not an alignbench results database (left untouched)")
        if not header.startswith(_SQLITE_MAGIC):
            raise UserError(f"{self.path}: not a SQLite database (left untouched)")
        if len(header) < 100:
            raise UserError(f"{self.path}: truncated SQLite header ({len(header)} bytes), a damaged results database (left untouched)")
        if int.from_bytes(header[68:72], "big") != APPLICATION_ID:
            raise UserError(f"{self.path}: a SQLite database of another application, not alignbench results (left untouched)")

    def _check_contents(self) -> None:
        """Schema version, then an integrity check that reads every page: a damaged store is never written."""
        version = self._connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise UserError(f"{self.path}: written by a newer alignbench (schema {version} > {SCHEMA_VERSION})")
        # integrity_check: every page of every table and index, and that each index matches its table (which
        # quick_check skips); 26 ms for a 20 000-entry store on a 2-core CPU
        problems = [row[0] for row in self._connection.execute("PRAGMA integrity_check(3)").fetchall()]
        if problems != ["ok"]:
            raise UserError(f"{self.path}: corrupt results database (integrity check: {'; '.join(problems)}); left untouched")
        tables = {row[0] for row in self._connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = sorted({"results", "complexity"} - tables)
        if missing:
            raise UserError(f"{self.path}: damaged results database (missing table {', '.join(missing)}); left untouched")

    def _initialise(self) -> None:
        with self.transaction():
            self._connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            self._connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            for statement in _SCHEMA.strip().split(";"):
                if statement.strip():
                    self._connection.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): writers serialise, readers never block."""
        if self.read_only:
            raise RuntimeError(f"{self.path}: opened read-only")
        self._connection.execute("BEGIN IMMEDIATE")
        try:
            yield self._connection
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise
        self._connection.execute("COMMIT")

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- results -------------------------------------------------------------------------------------

    def add(self, record: ResultRecord) -> bool:
        """Store a finished entry in one transaction; False (and nothing written) if it is already there."""
        values = {key: value for key, value in record.__dict__.items() if key != "id"}
        values["config"] = json.dumps(to_jsonable(values["config"]), sort_keys=True)
        values["metrics"] = json.dumps(to_jsonable(values["metrics"]), sort_keys=True, allow_nan=False)
        columns = ", ".join(values)
        placeholders = ", ".join(f":{key}" for key in values)
        with self.transaction() as connection:
            cursor = connection.execute(
                f"INSERT OR IGNORE INTO results ({columns}) VALUES ({placeholders})", values
            )
            return cursor.rowcount == 1

    def has(self, suite: str, row: str, seed: int, config_hash: str) -> bool:
        query = "SELECT 1 FROM results WHERE suite = ? AND row = ? AND seed = ? AND config_hash = ?"
        return self._connection.execute(query, (suite, row, seed, config_hash)).fetchone() is not None

    def records(self, suite: str | None = None) -> list[ResultRecord]:
        """All results (of one suite), oldest first."""
        query = "SELECT * FROM results" + (" WHERE suite = ?" if suite else "") + " ORDER BY id"
        try:
            rows = self._connection.execute(query, (suite,) if suite else ()).fetchall()
        except sqlite3.DatabaseError as error:  # damage inside a value (no page check sees it), e.g. bad UTF-8
            raise UserError(f"{self.path}: damaged results database ({error}); left untouched") from None
        return [self._record(row) for row in rows]

    def _record(self, row: sqlite3.Row) -> ResultRecord:
        data = dict(row)
        try:
            data["config"] = json.loads(data["config"])
            data["metrics"] = json.loads(data["metrics"])
        except (TypeError, ValueError) as error:
            raise UserError(f"{self.path}: damaged entry id {data.get('id')} ({error}); left untouched") from None
        return ResultRecord(**data)

    # --- complexity cache ----------------------------------------------------------------------------

    def complexity(self, model: str, size: tuple[int, int]) -> dict | None:
        row = self._connection.execute(
            "SELECT figures FROM complexity WHERE model = ? AND height = ? AND width = ?", (model, *size)
        ).fetchone()
        return None if row is None else json.loads(row["figures"])

    def add_complexity(self, model: str, size: tuple[int, int], figures: dict) -> None:
        with self.transaction() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO complexity (model, height, width, figures) VALUES (?, ?, ?, ?)",
                (model, *size, json.dumps(to_jsonable(figures), sort_keys=True)),
            )


def load_results(path: str | Path):
    """The results as a pandas DataFrame, one row per entry, metrics flattened into columns."""
    import pandas as pd

    with ResultsStore(path, create=False) as store:  # read-only: never written, never switched to WAL
        records = store.records()
    rows = []
    for record in records:
        row = {key: value for key, value in record.__dict__.items() if key not in ("metrics", "config")}
        row["config"] = json.dumps(record.config, sort_keys=True)
        for key, value in _flatten(record.metrics).items():
            row[key] = value
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in ("started_at", "finished_at"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column])
    return frame


def _flatten(metrics: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
