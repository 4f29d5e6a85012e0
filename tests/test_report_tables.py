"""Paper-style tables: the two ways papers print improvements, clean column labels, GMAC footnote."""

from alignbench.bench.suites import load_suites
from alignbench.reports.paper import paper_table
from alignbench.reports.report import SuiteResults, suite_table


def _results(values: dict[str, dict[str, float | list[float]]], budget: str = "short", accuracy_shown: bool = True) -> SuiteResults:
    return SuiteResults(
        values={row: {metric: value if isinstance(value, list) else [value] for metric, value in metrics.items()}
                for row, metrics in values.items()},
        class_iou={}, seeds=[0], devices=["cpu"], data=["synthetic"], budget=budget, timing=[], accuracy_shown=accuracy_shown,
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
    # columns: params ours / paper / gap, mIoU ours / paper
    assert _cells(table, "FPN")[5:7] == ["70.0 (+2.0)", "77.4 (+2.6)"]


def test_garbled_headers_are_shown_by_their_clean_label():
    (suite,) = load_suites(["fpt_table1"])
    table = suite_table(suite, paper_table("FPT", "Table 1"), _results({}))
    assert "AP (box) ours" in table.header and "AP (mask) paper" in table.header and "Params (M) ours" in table.header
    assert not any("A P" in name or "Para msC" in name for name in table.header)


def test_smoke_accuracy_is_not_shown_bolded_or_compared():
    (suite,) = load_suites(["fapn_table1"])
    paper = paper_table("FaPN", "Table 1")
    measured = {"fpn_r50": {"params_m": 28.6, "mIoU": 0.03}, "fapn_r50": {"params_m": 33.5, "mIoU": 0.04}}
    table = suite_table(suite, paper, _results(measured, budget="smoke", accuracy_shown=False))
    fpn = _cells(table, "FPN")
    assert fpn[5:7] == ["—", "77.4 (+2.6)"]  # the paper's numbers stay; ours is no result
    assert fpn[2] == "28.60 (+4.90)"  # params are real measurements, their differences too
    assert not any(cell.bold for row in table.rows for cell in row)
    assert any(note.startswith("—: accuracy was measured under the smoke budget") for note in table.footnotes)


def test_accuracy_under_a_measuring_budget_is_shown_and_not_bolded_without_significance():
    """Shown as a result, but bold needs a significant difference (per-image statistics, tests/test_significance.py):
    a higher mean alone is not bolded, nor is the smallest parameter count."""
    (suite,) = load_suites(["fapn_table1"])
    paper = paper_table("FaPN", "Table 1")
    measured = {"fpn_r50": {"params_m": 28.6, "mIoU": 0.50}, "fapn_r50": {"params_m": 33.5, "mIoU": 0.55}}
    table = suite_table(suite, paper, _results(measured))
    assert "55.0 (+0.0)" in _cells(table, "FPN + FAM + FSM (FaPN)")
    assert not any(cell.bold for row in table.rows for cell in row)


def test_params_gap_to_the_paper_is_flagged_over_five_percent():
    (suite,) = load_suites(["fapn_table1"])
    paper = paper_table("FaPN", "Table 1")
    paper_params = {row.key: row.values["params_m"] for row in paper.rows}
    measured = {"fpn_r50": {"params_m": paper_params["fpn_r50"] * 1.02}, "fapn_r50": {"params_m": paper_params["fapn_r50"] * 1.10}}
    table = suite_table(suite, paper, _results(measured))
    assert _cells(table, "FPN")[4] == "+2.0%"
    assert _cells(table, "FPN + FAM + FSM (FaPN)")[4] == "+10.0% ⚑"
    assert any("docs/fidelity.md" in note for note in table.footnotes)


def test_deterministic_figures_carry_no_zero_spread_or_negative_zero():
    (suite,) = load_suites(["fapn_table1"])
    paper = paper_table("FaPN", "Table 1")
    measured = {"fpn_r50": {"params_m": [28.612, 28.612]}, "fapn_r50": {"params_m": [28.610, 28.610]}}  # FaPN - FPN = -0.002
    results = _results(measured)
    results.seeds = [0, 1]
    table = suite_table(suite, paper, results)
    text = " ".join(cell.text for row in table.rows for cell in row)
    assert "±" not in text and "(-0.0)" not in text
    assert _cells(table, "FPN")[2] == "28.61 (+0.00)"


def test_rows_that_would_read_alike_are_told_apart():
    from alignbench.reports.report import row_labels

    table_6 = row_labels(paper_table("FaPN", "Table 6").rows)
    assert table_6["fpn_panoptic_fcn_r50"] == "FPN (PanopticFCN)" and table_6["fpn_panoptic_fpn_r50"] == "FPN (PanopticFPN)"
    table_8a = row_labels(paper_table("FaPN", "Table 8(a)").rows)
    assert table_8a["fapn_r18_512x1024"] == "FaPN 512x1024" and table_8a["fapn_r18_768x1536"] == "FaPN 768x1536"
    assert table_8a["espnet"] == "ESPNet [35]"  # a row no other reads like keeps its name


def test_rendered_report_has_a_summary_contents_and_no_literal_backticks(tmp_path):
    from alignbench.reports.report import render_report

    (suite,) = load_suites(["fapn_table8a"])
    paper = paper_table("FaPN", "Table 8(a)")
    results = _results({"fapn_r18_512x1024": {"fps": 3.1, "mIoU_val": 0.02}}, budget="smoke", accuracy_shown=False)
    written = render_report([(suite, paper, results, "CPU minutes")], tmp_path, "Results: `store.sqlite`.", formats=("md", "html"))
    page = written["html"].read_text()
    assert "`" not in page and "<code>store.sqlite</code>" in page
    assert "<h2>Summary</h2>" in page and f'href="#{"fapn-table-8-a-real-time-semantic-segmentation-on-cityscapes"}"' in page
    markdown = written["md"].read_text()
    assert "## Summary" in markdown and "say nothing about accuracy" not in markdown
    assert "a budget that says nothing about accuracy" in markdown
    assert (tmp_path / "figures" / "fapn_table8a_speed.png").exists()  # ours and the paper's FPS on separate axes


def test_band_columns_come_with_their_width_and_share_of_the_pixels():
    """The report prints beside the band scores which width each band had on the maps and what share of the evaluated
    pixels it holds; bands that coincide after scaling, and a band holding most of the image, are said to be so."""
    (suite,) = load_suites(["miniature_alignment_r18"])
    results = _results({"fpn": {"mIoU": 0.5, "band_3": 0.4, "band_5": 0.4, "band_8": 0.4, "band_12": 0.45}})
    results.band_share = {"3": 0.21, "5": 0.21, "8": 0.21, "12": 0.56}
    results.band_width_px = {"3": [1], "5": [1], "8": [1], "12": [2]}
    table = suite_table(suite, suite.reference_table(), results)
    shares = _cells(table, "band: width used, share of evaluated pixels")
    assert shares[1:6] == ["", "1 px, 21%", "1 px, 21%", "1 px, 21%", "2 px, 56%"]
    assert any("3, 5, 8 px are all 1 px" in note for note in table.footnotes)
    assert any("12 px (holds 56% of the evaluated pixels: not a boundary measurement)" in note for note in table.footnotes)
    results.band_share, results.band_width_px = {}, {}  # a store of results that recorded none (before they were)
    assert not any(row[0].text.startswith("band:") for row in suite_table(suite, suite.reference_table(), results).rows)
