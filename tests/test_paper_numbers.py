"""The papers' reference numbers (reports/paper/*.yaml): traceable to the papers' text, well-formed, loadable.

Matching rule for "the row's text occurs in the paper": both sides have every run of whitespace (tabs, newlines)
collapsed to one space; markup is kept, so a row's `text` must be the source line(s) verbatim. Captions are
stored without markdown emphasis, so for them `**`, `*` and <b>/<i>/<u> tags are removed from the paper first;
a sub-table caption is "<table caption> — <sub-table caption>" and each part must occur.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import pytest
import yaml
from alignbench_test_helpers import REPO_ROOT

from alignbench.reports.paper import (
    PAPER_DIR as YAML_DIR,
)
from alignbench.reports.paper import (
    PAPERS,
    VALUE_KEYS,
    PaperTable,
    list_tables,
    load_paper,
    load_paper_file,
    paper_table,
    paper_value,
)

PAPER_DIRS = [REPO_ROOT.parent / "shared" / "papers", REPO_ROOT / "shared" / "papers"]
PAPER_DIR = next((d for d in PAPER_DIRS if (d / "fapn.md").is_file()), None)
needs_papers = pytest.mark.skipif(PAPER_DIR is None, reason="the papers' markdown (../shared/papers) is not here")

NUMBER = re.compile(r"\d+(?:\.\d+)?")
MARKUP = re.compile(r"\*\*|\*|</?(?:b|i|u)>")

# Row counts as transcribed: a table that loses or gains a row fails here.
EXPECTED_ROWS = {
    ("fapn", "Table 1"): 8, ("fapn", "Table 2"): 4, ("fapn", "Table 3"): 4, ("fapn", "Table 4"): 4,
    ("fapn", "Table 5"): 6, ("fapn", "Table 6"): 8, ("fapn", "Table 8(a)"): 8, ("fapn", "Table 8(b)"): 5,
    ("fapn", "Table I"): 4,
    ("sfnet", "Table 1(a)"): 6, ("sfnet", "Table 1(b)"): 6, ("sfnet", "Table 1(c)"): 5, ("sfnet", "Table 1(d)"): 10,
    ("sfnet", "Table 2(a)"): 3, ("sfnet", "Table 2(b)"): 4, ("sfnet", "Table 2(c)"): 3, ("sfnet", "Table 2(d)"): 5,
    ("sfnet", "Table 3"): 17, ("sfnet", "Table 4"): 14,
    ("fpt", "Table 1"): 8, ("fpt", "Table 2"): 4, ("fpt", "Table 3"): 17, ("fpt", "Table 4"): 8,
}
TABLES = list(EXPECTED_ROWS)


def _spaces(text: str) -> str:
    return " ".join(text.split())


def _paper_text(source: str, *, strip_markup: bool = False) -> str:
    text = (PAPER_DIR / source).read_text(encoding="utf-8")
    return _spaces(MARKUP.sub("", text) if strip_markup else text)


def _table(ident: tuple[str, str]) -> PaperTable:
    return paper_table(*ident)


# --- the transcription ------------------------------------------------------------------------------------------


def test_every_listed_table_is_transcribed_with_its_row_count():
    assert list_tables() == TABLES
    assert {ident: len(_table(ident).rows) for ident in TABLES} == EXPECTED_ROWS


@needs_papers
@pytest.mark.parametrize("ident", TABLES, ids=" ".join)
def test_row_texts_captions_and_headers_occur_in_the_paper(ident):
    table = _table(ident)
    paper = _paper_text(table.source)
    for row in table.rows:
        assert _spaces(row.text) in paper, f"{ident} {row.key}: text not found in {table.source}"
    for column in table.columns:
        assert _spaces(column.header) in paper, f"{ident} {column.key}: header {column.header!r} not found"
    plain = _paper_text(table.source, strip_markup=True)
    for part in table.caption.split(" — "):
        assert _spaces(part) in plain, f"{ident}: caption part {part!r} not found"


@pytest.mark.parametrize("ident", TABLES, ids=" ".join)
def test_values_appear_in_the_row_text_in_column_order(ident):
    """Each value is one of the numbers printed in its row's text, and they come in the columns' order."""
    table = _table(ident)
    for row in table.rows:
        printed = [float(token) for token in NUMBER.findall(row.text)]
        position = 0
        for key in table.column_keys:
            if key not in row.values:
                continue
            value = row.values[key]
            try:
                position = printed.index(value, position) + 1
            except ValueError:
                pytest.fail(f"{ident} {row.key}.{key} = {value} is not printed (in order) in {row.text!r}")


@pytest.mark.parametrize("ident", TABLES, ids=" ".join)
def test_keys_follow_the_vocabulary_and_rows_are_unique(ident):
    table = _table(ident)
    assert set(table.column_keys) <= VALUE_KEYS
    assert len(set(table.column_keys)) == len(table.columns)
    keys = [row.key for row in table.rows]
    assert len(set(keys)) == len(keys)
    for row in table.rows:
        assert re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", row.key)
        assert set(row.values) <= set(table.column_keys)
        assert row.values, f"{ident} {row.key}: no values"
    assert any(row.ours for row in table.rows), f"{ident}: no row of the paper's own method"


@pytest.mark.parametrize("ident", TABLES, ids=" ".join)
def test_input_sizes_are_printed_in_the_row_or_explained(ident):
    for row in _table(ident).rows:
        if row.input_size is None:
            continue
        printed = {int(float(token)) for token in NUMBER.findall(row.text)}
        assert set(row.input_size) <= printed or row.note, f"{ident} {row.key}: input size neither printed nor noted"


def test_the_raw_yaml_has_no_fields_the_loader_would_drop():
    """Values and keys survive loading: raw YAML rows equal the loaded rows."""
    for paper, file_name in PAPERS.items():
        raw = yaml.safe_load((YAML_DIR / file_name).read_text(encoding="utf-8"))
        tables = load_paper(paper)
        for raw_table in raw["tables"]:
            loaded = tables[raw_table["id"]]
            assert [r["key"] for r in raw_table["rows"]] == [r.key for r in loaded.rows]
            for raw_row, row in zip(raw_table["rows"], loaded.rows):
                assert {k: float(v) for k, v in raw_row["values"].items()} == dict(row.values)


# --- well-known numbers -----------------------------------------------------------------------------------------


def test_fapn_table_1_and_2_spot_checks():
    assert paper_value("fapn", "Table 1", "fapn_r50", "params_m") == 33.1
    assert paper_value("fapn", "Table 1", "fapn_r50", "mIoU") == 80.0
    assert paper_value("fapn", "Table 1", "fpn_r50", "params_m") == 28.6
    row = paper_table("FaPN", "Table 2").row("fapn_pointrend_r50")
    assert (row.backbone, row.ours, row.values["band_3"]) == ("R50", True, 49.2)
    fpn = paper_table("fapn", "Table 2").row("fpn_pointrend_r50")
    assert fpn.backbone == "R50" and not fpn.ours and "PointRend" in fpn.note


def test_fapn_supplementary_table_i():
    table = paper_table("fapn", "Table I")
    assert table.source == "fapn_supplementary.md"
    row = table.row("fam_fsm_concat_r18")
    assert row.text.startswith("+ FAM + FSM + Concat\t")
    assert dict(row.values) == {"mIoU": 75.6, "params_m": 12.6, "gflops": 51.8}


def test_fapn_table_8_sizes_and_missing_values():
    assert paper_table("fapn", "Table 8(a)").row("fapn_r34_1024x2048").input_size == (1024, 2048)
    assert paper_value("fapn", "Table 8(a)", "espnet", "mIoU_val") is None  # printed "-"
    assert paper_value("fapn", "Table 8(a)", "fapn_r18_512x1024", "fps") == 142
    assert paper_table("fapn", "Table 8(b)").row("fapn_r18").input_size == (640, 640)  # merged cell


def test_sfnet_gflops_123_5_and_417_5():
    """Table 4 (1024x1024 input); the same numbers appear in Tables 1(c), 1(d) and 2(b)."""
    assert paper_value("sfnet", "Table 4", "sfnet_resnet18", "gflops") == 123.5
    assert paper_value("sfnet", "Table 4", "sfnet_resnet101", "gflops") == 417.5
    assert paper_value("sfnet", "Table 4", "sfnet_resnet18", "params_m") == 12.87
    assert paper_value("sfnet", "Table 1(c)", "fam_ppm", "gflops") == 123.5
    assert paper_value("sfnet", "Table 2(b)", "k3", "gflops") == 123.5
    assert paper_value("sfnet", "Table 1(d)", "sfnet_resnet101", "gflops") == 417.5
    assert "1024×1024" in paper_table("sfnet", "Table 4").note


def test_sfnet_table_3_two_speeds():
    row = paper_table("sfnet", "Table 3").row("sfnet_resnet18")
    assert dict(row.values) == {"mIoU": 78.9, "fps": 18, "fps_trt": 26, "params_m": 12.87}
    assert row.input_size == (1024, 2048)
    assert paper_table("sfnet", "Table 3").row("enet").input_size == (360, 640)  # printed W x H


def test_fpt_table_4_rows():
    table = paper_table("fpt", "Table 4")
    assert [row.key for row in table.rows] == [
        "ufp", "ufp_st", "ufp_lgt", "ufp_rt", "ufp_lgt_st", "ufp_rt_st", "ufp_lgt_rt", "ufp_lgt_st_rt",
    ]
    assert dict(table.row("ufp").values) == {"mIoU_train": 86.0, "mIoU_val": 79.1, "params_m": 71.3, "gflops": 916.1}
    assert dict(table.row("ufp_lgt").values) == {
        "mIoU_train": 86.5, "mIoU_val": 80.3, "params_m": 102.8, "gflops": 1008.3,
    }
    full = table.row("ufp_lgt_st_rt")
    assert full.ours and dict(full.values) == {
        "mIoU_train": 87.4, "mIoU_val": 81.7, "params_m": 127.2, "gflops": 1063.9,
    }
    assert not table.row("ufp").ours


def test_fpt_unreadable_cells_are_left_out_and_explained():
    row = paper_table("fpt", "Table 1").row("bfp_gt_rt")
    assert "AP50_segm" not in row.values and "154.5" in row.text and "154.5" in row.note
    assert paper_value("fpt", "Table 3", "bfp_fpt_nl_resnet101", "AP75_segm") is None
    assert paper_value("fpt", "Table 3", "bfp_resnet101", "AP_bbox") == 33.1


# --- the loader -------------------------------------------------------------------------------------------------


def test_load_paper_is_case_insensitive_and_returns_a_copy():
    tables = load_paper("SFNet")
    assert list(tables)[:2] == ["Table 1(a)", "Table 1(b)"]
    tables.clear()
    assert load_paper("sfnet")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: load_paper("yolo"), "unknown paper 'yolo'"),
        (lambda: paper_table("fapn", "Table 7"), "fapn.yaml: unknown table 'Table 7'"),
        (lambda: paper_value("fapn", "Table 1", "nope", "mIoU"), "unknown row 'nope'"),
        (lambda: paper_value("fapn", "Table 1", "fapn_r50", "PQ"), "unknown column 'PQ'"),
    ],
)
def test_lookup_errors_name_what_is_unknown(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


GOOD = """\
paper: X
title: A paper
source: x.md
tables:
  - id: Table 1
    caption: c
    dataset: d
    columns:
      - {key: mIoU, header: mIoU}
    rows:
      - {key: a, method: A, ours: true, text: "A 1.0", values: {mIoU: 1.0}}
"""


@pytest.mark.parametrize(
    "text, field",
    [
        ("tables: [\n", "malformed YAML"),
        ("- just a list\n", "top level: expected a mapping"),
        (GOOD.replace("title: A paper\n", ""), "top level.title: missing field"),
        (GOOD.replace("key: mIoU,", "key: accuracy,"), "tables[0] (Table 1).columns[0].key: 'accuracy'"),
        (GOOD.replace("values: {mIoU: 1.0}", "values: {PQ: 1.0}"), "tables[0] (Table 1).rows[0].values.PQ"),
        (GOOD.replace("values: {mIoU: 1.0}", "values: {mIoU: high}"), "rows[0].values.mIoU: expected a number"),
        (GOOD.replace("ours: true", "ours: yes please"), "rows[0].ours"),
        (GOOD.replace("key: a,", "key: Bad-Key,"), "rows[0].key: 'Bad-Key' is not a snake_case id"),
        (GOOD.replace("ours: true,", "ours: true, colour: red,"), "rows[0].colour: unknown field"),
        (GOOD.replace("text: \"A 1.0\", ", ""), "rows[0].text: missing field"),
        (GOOD + "      - {key: a, method: A, ours: true, text: t, values: {}}\n", "rows[1].key: duplicate row key"),
        (GOOD.replace("ours: true,", "ours: true, input_size: [1024],"), "rows[0].input_size"),
    ],
)
def test_malformed_files_name_the_file_and_the_field(tmp_path, text, field):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as error:
        load_paper_file(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and field in message, message


def test_a_good_file_loads(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(GOOD)
    table = load_paper_file(path)["Table 1"]
    assert (table.paper, table.source, table.row("a").values["mIoU"], table.row("a").backbone) == ("X", "x.md", 1.0, None)


# --- packaging --------------------------------------------------------------------------------------------------


def test_yaml_files_ship_as_package_data():
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert "*.yaml" in config["tool"]["setuptools"]["package-data"]["alignbench.reports.paper"]
    assert sorted(PAPERS.values()) == sorted(p.name for p in (REPO_ROOT / "reports" / "paper").glob("*.yaml"))


def test_loading_the_numbers_imports_nothing_heavy():
    code = "import alignbench.reports.paper as p, sys; p.list_tables(); print(' '.join(sorted(sys.modules)))"
    modules = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT,
                                 check=True).stdout.split())
    assert not {"torch", "numpy", "pandas", "matplotlib", "alignbench.bench", "alignbench.models"} & modules
