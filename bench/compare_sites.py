"""Two models' site curves side by side: the Markdown table of the README and the model card, from the JSON lines.

    python bench/compare_sites.py OLD_SITE1.json NEW_SITE1.json [OLD_SITE2.json NEW_SITE2.json ...]

Each file is the last JSON line ``bench/site_curve.py`` printed for one site and one bundle (the same per-class
points and draws for both). Prints one row per site and curve ("previous / this", the better one in bold),
then how often and by how much the new model is higher, per curve.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

CURVES = {"fast": "fast retrain", "probe": "logistic regression on the frozen features"}


def read_result(path: Path) -> dict[str, Any]:
    lines = path.read_text().strip().splitlines()
    if not lines:
        raise SystemExit(f"{path}: empty")
    return json.loads(lines[-1])


def pair(old: float | None, new: float | None) -> str:
    """'old / new', the higher of the two in bold (ties: neither)."""
    if old is None or new is None:
        return "—"
    shown = f"{new:.3f}"
    if round(new, 3) > round(old, 3):
        shown = f"**{shown}**"
    return f"{old:.3f} / {shown}"


def row(name: str, before: str, cells: list[str]) -> str:
    return f"| {name} | {before} | " + " | ".join(cells) + " |"


def site_rows(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], dict[str, list[float]]]:
    """The table rows of one site and, per curve, new minus old at each N."""
    if old["site"] != new["site"] or old["per_class"] != new["per_class"]:
        raise SystemExit(f"not the same measurement: {old['site']} {old['per_class']}, "
                         f"{new['site']} {new['per_class']}")
    rows: list[str] = []
    gains: dict[str, list[float]] = {}
    for curve, name in CURVES.items():
        if curve not in old["curves"] or curve not in new["curves"]:
            continue
        before = pair(old["running_site"], new["running_site"]) if curve == "fast" else "—"
        points = list(zip(old["curves"][curve], new["curves"][curve], strict=True))
        gains[curve] = [n["site"] - o["site"] for o, n in points]
        rows.append(row(f"{new['site']}, {name}", before, [pair(o["site"], n["site"]) for o, n in points]))
        if curve == "fast":  # what the candidates keep of the base data, beside their site gain
            first = pair(points[0][0]["running_base"], points[0][1]["running_base"])
            rows.append(row(f"{new['site']}, TrashNet test accuracy of the fast candidate", first,
                            [pair(o["base"], n["base"]) for o, n in points]))
    return rows, gains


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="+", help="pairs of JSON results: previous model, then this one")
    args = parser.parse_args()
    if len(args.results) % 2:
        parser.error("give the results in pairs: previous model, then this one, per site")
    results = [read_result(p) for p in args.results]
    per_class = results[0]["per_class"]
    print("| site, N corrections per class (previous / **this**) | before any | "
          + " | ".join(str(n) for n in per_class) + " |")
    print("|---" * (len(per_class) + 2) + "|")
    totals: dict[str, list[float]] = {}
    for old, new in zip(results[::2], results[1::2], strict=True):
        rows, gains = site_rows(old, new)
        print("\n".join(rows))
        for curve, values in gains.items():
            totals.setdefault(curve, []).extend(values)
    print()
    for curve, values in totals.items():
        higher = sum(v > 0 for v in values)
        print(f"{CURVES[curve]}: higher at {higher} of {len(values)} points, mean {sum(values) / len(values):+.3f}, "
              f"from {min(values):+.3f} to {max(values):+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
