"""The results store: one SQLite file (standard library), WAL mode, one transaction per finished entry.

An entry is one (suite, row, seed) evaluated under one configuration; its `config_hash` covers
everything that decides the numbers: the experiment (model, data, budget, seed, training recipe, weights
files), whose hash alone is `setup_hash`, and the code (the package version and the model definition's
fingerprint, bench.provenance). Completed entries are never run again, so a crashed or killed `run-all`
resumes where it stopped and nothing finished is lost or duplicated (UNIQUE(suite, row, seed, config_hash)).
A result of the same experiment made by other code stays in the store, marked `superseded` once the
running code has made its own. Each result keeps its provenance: package version, model fingerprint, git
commit, torch / CUDA / GPU, device, start and end time.

Complexity figures (parameters, MACs at an input size) are deterministic for one model definition and
cached in their own table, keyed by model, size and code identity.

Per-image statistics (what the report's bootstrap intervals resample: bench.evaluation.loop `statistics()`)
are one compressed npz blob per result in the `statistics` table, read only when asked for (`statistics`).

Leases (`leases` table: training key, owner "host:pid", acquired_at, heartbeat) let several `run-all` processes
share one store without training the same model twice: a process trains a group only while it holds the group's
lease (`take_lease`, `holding_lease`). A holder that died is recognised (same host: its process is gone; any host:
its heartbeat is older than LEASE_TIMEOUT_S) and its lease is taken over.

Schema versions: 1 had no setup hash, code columns or superseded flag; 2 had no statistics table; 3 had no
leases table. An older store is migrated in place when opened for writing (one transaction, every row kept: a
schema-1 row's setup hash is its config hash, which then covered the experiment only; older rows have no
statistics); readers read it as it is.
A file that is not an alignbench store (another SQLite database, or not SQLite at all) or a damaged one
(`PRAGMA integrity_check` when the store is opened) is refused with a clear error and never written to.
Readers (`report`, `results`) open the store read-only and also work on read-only media and full disks.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import sqlite3
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alignbench.bench.errors import UserError
from alignbench.bench.io import process_alive, to_jsonable

log = logging.getLogger(__name__)

APPLICATION_ID = 0x41424E43  # "ABNC": PRAGMA application_id marks our databases
SCHEMA_VERSION = 4
LEASE_TIMEOUT_S = 600.0  # a lease whose heartbeat is older is taken over, whichever host holds it
HEARTBEAT_S = 30.0  # how often a holder refreshes its lease's heartbeat while it trains
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
    setup_hash TEXT,
    code_version TEXT,
    model_fingerprint TEXT,
    superseded INTEGER NOT NULL DEFAULT 0,
    UNIQUE (suite, row, seed, config_hash)
);
CREATE TABLE IF NOT EXISTS complexity (
    model TEXT NOT NULL,
    height INTEGER NOT NULL,
    width INTEGER NOT NULL,
    code TEXT NOT NULL DEFAULT '',
    figures TEXT NOT NULL,
    PRIMARY KEY (model, height, width, code)
);
CREATE TABLE IF NOT EXISTS statistics (
    result_id INTEGER PRIMARY KEY REFERENCES results (id),
    npz BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    training_key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    acquired_at REAL NOT NULL,
    heartbeat REAL NOT NULL
);
"""

_MIGRATE_2_TO_3 = """
CREATE TABLE IF NOT EXISTS statistics (
    result_id INTEGER PRIMARY KEY REFERENCES results (id),
    npz BLOB NOT NULL
)
"""

# owner: "host:pid"; acquired_at and heartbeat: Unix time in seconds (the holder's clock)
_MIGRATE_3_TO_4 = """
CREATE TABLE IF NOT EXISTS leases (
    training_key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    acquired_at REAL NOT NULL,
    heartbeat REAL NOT NULL
)
"""

# schema 1 -> 2, in one transaction; rows of schema 1 keep their numbers and get their setup hash
_MIGRATE_1_TO_2 = """
ALTER TABLE results ADD COLUMN setup_hash TEXT;
ALTER TABLE results ADD COLUMN code_version TEXT;
ALTER TABLE results ADD COLUMN model_fingerprint TEXT;
ALTER TABLE results ADD COLUMN superseded INTEGER NOT NULL DEFAULT 0;
UPDATE results SET setup_hash = config_hash;
ALTER TABLE complexity RENAME TO complexity_schema1;
CREATE TABLE complexity (
    model TEXT NOT NULL,
    height INTEGER NOT NULL,
    width INTEGER NOT NULL,
    code TEXT NOT NULL DEFAULT '',
    figures TEXT NOT NULL,
    PRIMARY KEY (model, height, width, code)
);
INSERT INTO complexity (model, height, width, code, figures) SELECT model, height, width, '', figures FROM complexity_schema1;
DROP TABLE complexity_schema1
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
    setup_hash: str | None = None  # the experiment without the code (None: taken as config_hash)
    code_version: str | None = None  # alignbench version that made it
    model_fingerprint: str | None = None  # bench.provenance.model_fingerprint of the model it measured
    superseded: bool = False  # a newer result of the same experiment, made by other code, replaces it
    id: int | None = field(default=None, compare=False)
    # per-image statistics (name -> numpy array), stored in the statistics table; not loaded by `records()`
    statistics: dict | None = field(default=None, compare=False, repr=False)


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
                if not self.read_only:
                    self._migrate()
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

    def _schema_version(self) -> int:
        return int(self._connection.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        """Bring a store of an older schema to SCHEMA_VERSION in place, in one transaction."""
        version = self._connection.execute("PRAGMA user_version").fetchone()[0]
        if version >= SCHEMA_VERSION:
            return
        with self.transaction() as connection:
            if version < 2:
                for statement in _MIGRATE_1_TO_2.strip().split(";"):
                    connection.execute(statement)
            if version < 3:
                connection.execute(_MIGRATE_2_TO_3)
            if version < 4:
                connection.execute(_MIGRATE_3_TO_4)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

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
        """Store a finished entry in one transaction; False (and nothing written) if it is already there.

        The other results of the same experiment (suite, row, seed, setup hash), made by other code, are
        marked superseded in the same transaction.
        """
        values = {key: value for key, value in record.__dict__.items() if key not in ("id", "statistics")}
        values["setup_hash"] = record.setup_hash or record.config_hash
        values["superseded"] = int(record.superseded)
        values["config"] = json.dumps(to_jsonable(values["config"]), sort_keys=True)
        values["metrics"] = json.dumps(to_jsonable(values["metrics"]), sort_keys=True, allow_nan=False)
        columns = ", ".join(values)
        placeholders = ", ".join(f":{key}" for key in values)
        with self.transaction() as connection:
            cursor = connection.execute(
                f"INSERT OR IGNORE INTO results ({columns}) VALUES ({placeholders})", values
            )
            if cursor.rowcount == 1 and record.statistics:
                connection.execute("INSERT INTO statistics (result_id, npz) VALUES (?, ?)", (cursor.lastrowid, _to_npz(record.statistics)))
            if cursor.rowcount == 1 and not record.superseded:
                self._supersede_others(connection, record.suite, record.row, record.seed, values["setup_hash"], record.config_hash)
            return cursor.rowcount == 1

    def statistics(self, result_id: int) -> dict | None:
        """The per-image statistics stored with a result (name -> numpy array), None when it has none."""
        if self._schema_version() < 3:
            return None
        row = self._connection.execute("SELECT npz FROM statistics WHERE result_id = ?", (result_id,)).fetchone()
        if row is None:
            return None
        try:
            return _from_npz(row[0])
        except (ValueError, OSError, EOFError) as error:
            raise UserError(f"{self.path}: damaged statistics of entry id {result_id} ({error}); left untouched") from None

    @staticmethod
    def _supersede_others(connection, suite: str, row: str, seed: int, setup_hash: str, config_hash: str) -> int:
        cursor = connection.execute(
            "UPDATE results SET superseded = (config_hash != :config) WHERE suite = :suite AND row = :row AND seed = :seed "
            "AND setup_hash = :setup AND superseded != (config_hash != :config)",
            {"suite": suite, "row": row, "seed": seed, "setup": setup_hash, "config": config_hash},
        )
        return cursor.rowcount

    def make_current(self, suite: str, row: str, seed: int, setup_hash: str, config_hash: str) -> int:
        """Mark the result `config_hash` of an experiment current and the others superseded (e.g. after a
        return to code that made an older result); writes nothing when the flags are already so. Returns
        the number of rows changed."""
        query = ("SELECT count(*) FROM results WHERE suite = ? AND row = ? AND seed = ? AND setup_hash = ? "
                 "AND superseded != (config_hash != ?)")
        if not self._connection.execute(query, (suite, row, seed, setup_hash, config_hash)).fetchone()[0]:
            return 0
        with self.transaction() as connection:
            return self._supersede_others(connection, suite, row, seed, setup_hash, config_hash)

    def has(self, suite: str, row: str, seed: int, config_hash: str) -> bool:
        query = "SELECT 1 FROM results WHERE suite = ? AND row = ? AND seed = ? AND config_hash = ?"
        return self._connection.execute(query, (suite, row, seed, config_hash)).fetchone() is not None

    def records(self, suite: str | None = None, include_superseded: bool = True) -> list[ResultRecord]:
        """All results (of one suite; without the superseded ones if asked), oldest first."""
        has_flag = self._schema_version() >= 2  # a schema-1 store opened read-only is read as it is
        conditions = (["suite = :suite"] if suite else []) + ([] if include_superseded or not has_flag else ["superseded = 0"])
        query = "SELECT * FROM results" + (" WHERE " + " AND ".join(conditions) if conditions else "") + " ORDER BY id"
        try:
            rows = self._connection.execute(query, {"suite": suite}).fetchall()
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
        data["superseded"] = bool(data.get("superseded", 0))
        return ResultRecord(**data)

    # --- leases on training keys ----------------------------------------------------------------------

    def take_lease(self, training_key: str, timeout_s: float = LEASE_TIMEOUT_S) -> str | None:
        """Take the lease on a training key unless a live process holds it: None when this process holds it now,
        else the holder ("host:pid").

        The read and the write are one BEGIN IMMEDIATE transaction (SQLite's write lock), so two processes never
        both take it. A holder is dead when it runs on this host and its process is gone, or when its heartbeat
        is older than `timeout_s` (on any host); a dead holder's lease is taken over.
        """
        me, now = lease_owner(), time.time()
        with self.transaction() as connection:
            row = connection.execute("SELECT owner, heartbeat FROM leases WHERE training_key = ?", (training_key,)).fetchone()
            if row is not None and row["owner"] != me:
                if _holder_alive(row["owner"], row["heartbeat"], now, timeout_s):
                    return row["owner"]
                log.warning("%s: taking over the lease of %s, which is no longer running", self.path, row["owner"])
            connection.execute("INSERT OR REPLACE INTO leases (training_key, owner, acquired_at, heartbeat) VALUES (?, ?, ?, ?)",
                               (training_key, me, now, now))
        return None

    def release_lease(self, training_key: str) -> None:
        """Give up this process's lease on a training key (another process's lease is left alone)."""
        with self.transaction() as connection:
            connection.execute("DELETE FROM leases WHERE training_key = ? AND owner = ?", (training_key, lease_owner()))

    @contextmanager
    def holding_lease(self, training_key: str, heartbeat_s: float = HEARTBEAT_S) -> Iterator[None]:
        """Keep this process's lease on `training_key` (from `take_lease`) alive while the block runs, and release it
        at the end whatever happens (an error, KeyboardInterrupt, SystemExit).

        A thread refreshes the heartbeat every `heartbeat_s` through its own connection (a sqlite3 connection
        belongs to its thread), so a long training is never taken for a dead one.
        """
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(training_key, stop, heartbeat_s), name="alignbench-lease", daemon=True)
        beat.start()
        try:
            yield
        finally:
            stop.set()
            beat.join()
            try:
                self.release_lease(training_key)
            except sqlite3.Error as error:  # e.g. a full disk: the lease dies with this process (take_lease)
                log.warning("%s: lease on %s not released (%s)", self.path, training_key, error)

    def _heartbeat(self, training_key: str, stop: threading.Event, every_s: float) -> None:
        connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            while not stop.wait(every_s):
                try:
                    cursor = connection.execute("UPDATE leases SET heartbeat = ? WHERE training_key = ? AND owner = ?",
                                                (time.time(), training_key, lease_owner()))
                except sqlite3.Error as error:  # busy for 30 s, or a full disk: try again at the next beat
                    log.warning("%s: lease heartbeat not written (%s)", self.path, error)
                    continue
                if cursor.rowcount == 0:
                    log.warning("%s: the lease on %s was taken over by another process", self.path, training_key)
        finally:
            connection.close()

    # --- complexity cache ----------------------------------------------------------------------------

    def complexity(self, model: str, size: tuple[int, int], code: str) -> dict | None:
        """Cached figures of `model` at `size` counted by the code `code` (a bench.provenance digest)."""
        row = self._connection.execute(
            "SELECT figures FROM complexity WHERE model = ? AND height = ? AND width = ? AND code = ?", (model, *size, code)
        ).fetchone()
        return None if row is None else json.loads(row["figures"])

    def add_complexity(self, model: str, size: tuple[int, int], code: str, figures: dict) -> None:
        with self.transaction() as connection:
            connection.execute(
                "INSERT OR REPLACE INTO complexity (model, height, width, code, figures) VALUES (?, ?, ?, ?, ?)",
                (model, *size, code, json.dumps(to_jsonable(figures), sort_keys=True)),
            )


def lease_owner() -> str:
    """This process as a lease holder: "host:pid"."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _holder_alive(owner: str, heartbeat: float, now: float, timeout_s: float) -> bool:
    """A lease holder is alive while its heartbeat is recent and, on this host, its process exists."""
    if now - heartbeat > timeout_s:
        return False
    host, _, pid = owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return process_alive(int(pid))
    return True


def _to_npz(arrays: dict) -> bytes:
    """Named numpy arrays as one compressed npz blob (no pickled objects)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{name: np.asarray(value) for name, value in arrays.items()})
    return buffer.getvalue()


def _from_npz(blob: bytes) -> dict:
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except zipfile.BadZipFile as error:
        raise ValueError(str(error)) from None


def load_results(path: str | Path):
    """The results as a pandas DataFrame, one row per entry, metrics flattened into columns."""
    import pandas as pd  # here: pandas loads only for this export, not for the store's readers and writers

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
