"""The papers' reference numbers, keyed by paper / table / row, with the source line each number came from.

One YAML file per paper sits beside this module (fapn.yaml, sfnet.yaml, fpt.yaml), transcribed from the
papers' text (FaPN and its supplementary material, SFNet, FPT). Each table row keeps `text`, its source line(s) verbatim, so a reader can
check every number; `note` records how an ambiguous cell was read. Values are as printed (percent stays
77.4, params in millions, GFLOPs as the paper counts them) under a fixed vocabulary of keys (VALUE_KEYS) that
code maps to measured metrics. Improvements printed in parentheses or in "improvement" rows are not stored:
the report recomputes them.

Only yaml, the standard library and the metric vocabulary (pure data) are imported, so reports can load these
numbers cheaply.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from alignbench.metrics.vocabulary import METRICS

__all__ = [
    "PAPERS",
    "VALUE_KEYS",
    "PaperColumn",
    "PaperRow",
    "PaperTable",
    "list_tables",
    "load_paper",
    "load_paper_file",
    "paper_table",
    "paper_value",
]

PAPER_DIR = Path(__file__).resolve().parent

#: paper name (lower case, as accepted by load_paper) -> YAML file beside this module
PAPERS: Mapping[str, str] = MappingProxyType({"fapn": "fapn.yaml", "sfnet": "sfnet.yaml", "fpt": "fpt.yaml"})

#: The value keys a column may use: the metric vocabulary (alignbench.metrics.vocabulary), which also says how
#: each is shown. Paper values are stored as printed: percentages as percent, params_m in millions, gflops as
#: the paper reports them.
VALUE_KEYS: frozenset[str] = frozenset(METRICS)

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: ~10x faster, same result
_KEY = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")
_TOP_FIELDS = {"paper", "title", "source", "tables"}
_TABLE_FIELDS = {"id", "caption", "dataset", "columns", "rows", "source", "note"}
_ROW_FIELDS = {"key", "method", "backbone", "framework", "input_size", "ours", "text", "values", "note"}


@dataclass(frozen=True)
class PaperColumn:
    """One value column: `key` from VALUE_KEYS, `header` as printed in the paper (as extracted, which
    can be garbled), `label` the clean name a report shows (defaults to `header`)."""

    key: str
    header: str
    label: str = ""

    @property
    def display(self) -> str:
        return self.label or self.header


@dataclass(frozen=True)
class PaperRow:
    """One table row: the paper's numbers (`values`, column key -> number) and the line they came from."""

    key: str
    method: str
    backbone: str | None
    input_size: tuple[int, int] | None  # (H, W), only when the row states one
    ours: bool
    text: str
    values: Mapping[str, float]
    note: str | None = None
    framework: str | None = None  # the detector / segmenter a row's neck sits in, where a table mixes them (merged cells)


@dataclass(frozen=True)
class PaperTable:
    """One paper table (or sub-table such as "Table 1(a)") with its columns in the paper's order."""

    paper: str
    id: str
    caption: str
    dataset: str
    columns: tuple[PaperColumn, ...]
    rows: tuple[PaperRow, ...]
    source: str
    note: str | None = None

    @property
    def column_keys(self) -> tuple[str, ...]:
        """The value keys of the columns, in the paper's order."""
        return tuple(column.key for column in self.columns)

    def row(self, key: str) -> PaperRow:
        """The row with this key; ValueError naming the table when there is none."""
        for row in self.rows:
            if row.key == key:
                return row
        known = ", ".join(r.key for r in self.rows)
        raise ValueError(f"{self.paper} {self.id}: unknown row {key!r} (rows: {known})")


def _fail(path: Path, where: str, problem: str) -> ValueError:
    return ValueError(f"{path}: {where}: {problem}")


def _text(path: Path, where: str, value: Any, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, where, f"expected a non-empty string, got {value!r}")
    return value


def _mapping(path: Path, where: str, value: Any, allowed: set[str], required: set[str]) -> dict:
    if not isinstance(value, dict):
        raise _fail(path, where, f"expected a mapping, got {type(value).__name__}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise _fail(path, f"{where}.{unknown[0]}", "unknown field")
    missing = sorted(required - set(value))
    if missing:
        raise _fail(path, f"{where}.{missing[0]}", "missing field")
    return value


def _parse_row(path: Path, where: str, raw: Any, columns: tuple[str, ...]) -> PaperRow:
    raw = _mapping(path, where, raw, _ROW_FIELDS, {"key", "method", "ours", "text", "values"})
    key = _text(path, f"{where}.key", raw["key"])
    if not _KEY.match(key):
        raise _fail(path, f"{where}.key", f"{key!r} is not a snake_case id")
    if not isinstance(raw["ours"], bool):
        raise _fail(path, f"{where}.ours", f"expected true or false, got {raw['ours']!r}")
    size = raw.get("input_size")
    if size is not None:
        if not (isinstance(size, list) and len(size) == 2 and all(type(v) is int and v > 0 for v in size)):
            raise _fail(path, f"{where}.input_size", f"expected [H, W] positive integers, got {size!r}")
        size = (size[0], size[1])
    values = raw["values"]
    if not isinstance(values, dict):
        raise _fail(path, f"{where}.values", f"expected a mapping, got {type(values).__name__}")
    for name, value in values.items():
        if name not in columns:
            raise _fail(path, f"{where}.values.{name}", f"not a declared column of this table {list(columns)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(path, f"{where}.values.{name}", f"expected a number, got {value!r}")
    return PaperRow(
        key=key,
        method=_text(path, f"{where}.method", raw["method"]),
        backbone=_text(path, f"{where}.backbone", raw.get("backbone"), optional=True),
        input_size=size,
        ours=raw["ours"],
        text=_text(path, f"{where}.text", raw["text"]),
        values=MappingProxyType({name: float(value) for name, value in values.items()}),
        note=_text(path, f"{where}.note", raw.get("note"), optional=True),
        framework=_text(path, f"{where}.framework", raw.get("framework"), optional=True),
    )


def _parse_table(path: Path, where: str, raw: Any, paper: str, source: str) -> PaperTable:
    raw = _mapping(path, where, raw, _TABLE_FIELDS, {"id", "caption", "dataset", "columns", "rows"})
    table_id = _text(path, f"{where}.id", raw["id"])
    where = f"{where} ({table_id})"
    if not isinstance(raw["columns"], list) or not raw["columns"]:
        raise _fail(path, f"{where}.columns", "expected a non-empty list")
    columns = []
    for j, column in enumerate(raw["columns"]):
        column = _mapping(path, f"{where}.columns[{j}]", column, {"key", "header", "label"}, {"key", "header"})
        if column["key"] not in VALUE_KEYS:
            raise _fail(path, f"{where}.columns[{j}].key", f"{column['key']!r} is not in the value vocabulary")
        if column["key"] in (c.key for c in columns):
            raise _fail(path, f"{where}.columns[{j}].key", f"duplicate column {column['key']!r}")
        label = _text(path, f"{where}.columns[{j}].label", column["label"]) if "label" in column else ""
        columns.append(PaperColumn(column["key"], _text(path, f"{where}.columns[{j}].header", column["header"]), label))
    keys = tuple(c.key for c in columns)
    if not isinstance(raw["rows"], list) or not raw["rows"]:
        raise _fail(path, f"{where}.rows", "expected a non-empty list")
    rows: list[PaperRow] = []
    for i, row in enumerate(raw["rows"]):
        parsed = _parse_row(path, f"{where}.rows[{i}]", row, keys)
        if parsed.key in (r.key for r in rows):
            raise _fail(path, f"{where}.rows[{i}].key", f"duplicate row key {parsed.key!r}")
        rows.append(parsed)
    return PaperTable(
        paper=paper,
        id=table_id,
        caption=_text(path, f"{where}.caption", raw["caption"]),
        dataset=_text(path, f"{where}.dataset", raw["dataset"]),
        columns=tuple(columns),
        rows=tuple(rows),
        source=_text(path, f"{where}.source", raw.get("source", source)),
        note=_text(path, f"{where}.note", raw.get("note"), optional=True),
    )


def load_paper_file(path: Path | str) -> dict[str, PaperTable]:
    """Parse and validate one paper YAML file; table id -> PaperTable in file order. ValueError names file and field."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
    except OSError as error:
        raise ValueError(f"{path}: cannot read: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: malformed YAML: {error}") from None
    raw = _mapping(path, "top level", raw, _TOP_FIELDS, _TOP_FIELDS)
    paper = _text(path, "paper", raw["paper"])
    source = _text(path, "source", raw["source"])
    _text(path, "title", raw["title"])
    if not isinstance(raw["tables"], list) or not raw["tables"]:
        raise _fail(path, "tables", "expected a non-empty list")
    tables: dict[str, PaperTable] = {}
    for i, table in enumerate(raw["tables"]):
        parsed = _parse_table(path, f"tables[{i}]", table, paper, source)
        if parsed.id in tables:
            raise _fail(path, f"tables[{i}].id", f"duplicate table id {parsed.id!r}")
        tables[parsed.id] = parsed
    return tables


def _file_for(paper: str) -> Path:
    name = paper.lower() if isinstance(paper, str) else paper
    if name not in PAPERS:
        raise ValueError(f"unknown paper {paper!r} (known: {', '.join(PAPERS)})")
    return PAPER_DIR / PAPERS[name]


@functools.cache
def _load_cached(path: Path) -> MappingProxyType:
    return MappingProxyType(load_paper_file(path))


def load_paper(paper: str) -> dict[str, PaperTable]:
    """All tables of one paper ("fapn", "sfnet", "fpt"; case-insensitive), table id -> PaperTable."""
    return dict(_load_cached(_file_for(paper)))


def paper_table(paper: str, table_id: str) -> PaperTable:
    """One table by its id as the paper names it ("Table 1", "Table 1(a)", FaPN supplementary "Table I")."""
    tables = _load_cached(_file_for(paper))
    if table_id not in tables:
        raise ValueError(f"{_file_for(paper)}: unknown table {table_id!r} (tables: {', '.join(tables)})")
    return tables[table_id]


def paper_value(paper: str, table_id: str, row_key: str, column_key: str) -> float | None:
    """The paper's number for one cell; None where the paper prints none ("-", or an unreadable cell)."""
    table = paper_table(paper, table_id)
    row = table.row(row_key)
    if column_key not in table.column_keys:
        raise ValueError(
            f"{paper} {table_id}: unknown column {column_key!r} (columns: {', '.join(table.column_keys)})"
        )
    return row.values.get(column_key)


def list_tables() -> list[tuple[str, str]]:
    """Every (paper, table id) pair, papers in PAPERS order and tables in file order."""
    return [(paper, table_id) for paper in PAPERS for table_id in _load_cached(_file_for(paper))]
