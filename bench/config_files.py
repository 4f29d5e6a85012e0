"""YAML files a user writes (suites, dataset files): parsed with the line of every key, so that each error names the
file, the line and the field, and checked against pydantic schemas.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from alignbench.bench.errors import UserError


class StrictSchema(BaseModel):
    """Strict types: no string for a number, no list for a string; unknown keys refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class LocatedYaml:
    """YAML data with the line of every mapping key and sequence item, for error messages."""

    def __init__(self, path: Path, text: str, what: str = "YAML") -> None:
        self.path = path
        try:
            node = yaml.compose(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = f":{mark.line + 1}" if mark else ""
            raise UserError(f"{path}{line}: invalid YAML ({getattr(error, 'problem', error)})") from None
        if node is None:
            raise UserError(f"{path}: empty {what} file")
        self.lines: dict[tuple, int] = {}
        self._index(node, ())
        self.data = yaml.safe_load(text)

    def _index(self, node, where: tuple) -> None:
        self.lines.setdefault(where, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                self.lines[where + (key_node.value,)] = key_node.start_mark.line + 1
                self._index(value_node, where + (key_node.value,))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._index(item, where + (index,))

    @classmethod
    def read(cls, path: Path, what: str) -> LocatedYaml:
        """The YAML file at `path` (`what` it holds, for messages: "suite", "dataset")."""
        return cls(path, read_text(path), what)

    def line(self, where: tuple) -> int:
        for end in range(len(where), -1, -1):
            if where[:end] in self.lines:
                return self.lines[where[:end]]
        return 1

    def error(self, where: tuple, message: str) -> UserError:
        name = ".".join(str(part) for part in where) or "(file)"
        return UserError(f"{self.path}:{self.line(where)}: {name}: {message}")

    def schema_error(self, error: ValidationError, known: dict[tuple, tuple[str, ...]]) -> UserError:
        """The first pydantic error as one line: file, line, field, problem (unknown keys list the known ones)."""
        first = error.errors()[0]
        where = tuple(first["loc"])
        if first["type"] == "extra_forbidden":
            fields = known.get(tuple(part for part in where[:-1] if not isinstance(part, int)), ())
            return self.error(where, f"unknown field (known: {', '.join(fields)})")
        if first["type"] == "missing":
            return self.error(where[:-1], f"missing field {where[-1]!r}")
        shown = first.get("input")
        shown = repr(shown) if isinstance(shown, (str, int, float, bool)) or shown is None else type(shown).__name__
        return self.error(where, f"{first['msg'][0].lower()}{first['msg'][1:]} (got {shown})")


def read_text(path: Path) -> str:
    """The file as UTF-8 text; undecodable bytes are an error naming the line."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror or error})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start})") from None
