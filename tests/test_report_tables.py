"""Paper-style tables: the two ways papers print improvements, clean column labels, GMAC footnote."""

from alignbench.bench.suites import load_suites
from alignbench.reports.paper import paper_table
from alignbench.reports.report import SuiteResults, suite_table


def _results(values: dict[str, dict[str, float]]) -> SuiteResults:
    return SuiteResults(
        values={row: {metric: [value] for metric, value in metrics.items()} for row, metrics in values.items()},
        class_iou={}, seeds=[0], devices=["cpu"], data=["synthetic"], budget="smoke", timing=[],
    )


def _cells(table, method: str) -> list[str]:
    row = next(row for row in table.rows if row[0].text == method)
    return [cell.text for cell in row]


def test_baseline_gain_is_row_minus_baseline_like_sfnet_prints_it():
    (suite,) = load_suites(["sfnet_table1a"])
    paper = paper_table("SFNet", "Table 1(a)")
    table = suite_table(suite, paper, _results({"fcn": {"mIoU": 0.60}, "fcn_fam": {"mIoU": 0.65}}))
    # measured: 65.0 - 60.0; paper: +FAM 77.2 - FCN 71.5 = +5.7 (the paper's own gain column says 5.7)
    assert _cells(table, "FCN + FAM")[2:4] == ["65.0 (+5.0)", "77.2 (+5.7)"]
    assert _cells(table, "FCN")[2:4] == ["60.0", "71.5"]  # no parentheses on the baseline itself
    assert any("the row minus FCN" in note for note in table.footnotes)


def test_reference_difference_is_reference_minus_row_like_fapn_prints_it():
    (suite,) = load_suites(["fapn_table1"])
    paper = paper_table("FaPN", "Table 1")
    table = suite_table(suite, paper, _results({"fpn_r50": {"mIoU": 0.70}, "fapn_r50": {"mIoU": 0.72}}))
    # paper: FaPN 80.0 - FPN 77.4 = (+2.6), exactly as FaPN Table 1 prints "77.4 (+2.6)"
    assert _cells(table, "FPN")[4:6] == ["70.0 (+2.0)", "77.4 (+2.6)"]  # columns: params ours / paper, mIoU ours / paper


def test_garbled_headers_are_shown_by_their_clean_label():
    (suite,) = load_suites(["fpt_table1"])
    table = suite_table(suite, paper_table("FPT", "Table 1"), _results({}))
    assert "AP (box) ours" in table.header and "AP (mask) paper" in table.header and "Params (M) ours" in table.header
    assert not any("A P" in name or "Para msC" in name for name in table.header)
