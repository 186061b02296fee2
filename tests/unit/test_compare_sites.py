"""The site comparison table: old / new per point, the higher in bold, gains measured new minus old."""

from __future__ import annotations

import pytest

from bench.compare_sites import pair, site_rows


def result(site: str, running: float, fast: list[float], probe: list[float]) -> dict:
    def rows(values: list[float]) -> list[dict]:
        return [{"per_class": n, "site": v, "base": 0.8, "running_base": 0.8}
                for n, v in zip((5, 10), values, strict=True)]

    return {"site": site, "per_class": [5, 10], "running_site": running,
            "curves": {"fast": rows(fast), "probe": rows(probe)}}


def test_pair_bolds_only_a_higher_new_value() -> None:
    assert pair(0.4, 0.5) == "0.400 / **0.500**"
    assert pair(0.5, 0.4) == "0.500 / 0.400"
    assert pair(0.4001, 0.4004) == "0.400 / 0.400"  # equal as printed: no bold
    assert pair(None, 0.4) == "—"


def test_site_rows_give_one_row_per_curve_and_the_gains() -> None:
    rows, gains = site_rows(result("belt", 0.3, [0.4, 0.5], [0.35, 0.45]),
                            result("belt", 0.25, [0.45, 0.48], [0.35, 0.5]))
    assert rows[0] == "| belt, fast retrain | 0.300 / 0.250 | 0.400 / **0.450** | 0.500 / 0.480 |"
    assert rows[1].startswith("| belt, TrashNet test accuracy of the fast candidate | 0.800 / 0.800 |")
    assert rows[2] == "| belt, logistic regression on the frozen features | — | 0.350 / 0.350 | 0.450 / **0.500** |"
    assert gains["fast"] == pytest.approx([0.05, -0.02]) and gains["probe"] == pytest.approx([0.0, 0.05])


def test_site_rows_refuse_different_measurements() -> None:
    with pytest.raises(SystemExit, match="not the same measurement"):
        site_rows(result("belt", 0.3, [0.4, 0.5], [0.3, 0.4]), result("dim", 0.3, [0.4, 0.5], [0.3, 0.4]))
