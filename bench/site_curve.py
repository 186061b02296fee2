"""The site learning curve: site accuracy against corrections per class, for each retraining mode.

    python bench/site_curve.py SITE_DIR [--per-class 5,10,20,30,60] [--modes fast,full] [--repeats 1]
                               [--bundle DIR] [--base-data DIR] [--plot curve.png] [--compare OLD.json]

SITE_DIR is a folder of site photos in class sub-folders (``bench/sites.py`` makes synthetic ones from the
base model's validation and test photos; any folder of real site photos works the same way). For each N it
starts a fresh data folder, lets the station's classifier look at N photos per class and stores them as
decisions with their true class (the station's own storage and embedding path, as if the operator had
labelled them), runs each retraining mode through the code the Retrain button runs (``run_retrain``, the
candidate kept, not promoted) and scores the running model and the candidate on every remaining site photo
and on the base test split, with the share of the remaining photos auto mode would confirm alone (trusting only
what the candidate's cross-validated checks back, ``station.trust``) and how many of those are right. "probe" is
the reference the issue tracker measured: a logistic regression on the frozen backbone's features fitted on the N
photos alone. Prints a table, writes a PNG of the curves,
and prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from numpy.typing import NDArray  # noqa: E402

from bench.common import DEFAULT_DATA, bundle_or_exit  # noqa: E402
from station.inference import Classifier, Prediction  # noqa: E402
from station.retraining import RetrainJob, run_retrain  # noqa: E402
from station.settings import load_settings  # noqa: E402
from station.storage import NewDecision, Storage  # noqa: E402
from station.trust import SiteTrust, bundle_checks  # noqa: E402
from training.data import scan_dataset  # noqa: E402
from training.head import Head, fit_head  # noqa: E402
from training.messages import Mode, Promote  # noqa: E402
from training.model import Bundle, load_bundle  # noqa: E402
from training.preprocess import load_prepared, load_rgb  # noqa: E402

MIN_SCORED = 8  # photos of each class kept for scoring whatever N asks


class Site:
    """The site's photos, looked at once by the running model (prediction + the embedding the station stores)."""

    def __init__(self, folder: Path, classifier: Classifier) -> None:
        dataset = scan_dataset(folder)
        unknown = sorted(set(dataset.class_names) - set(classifier.labels))
        if unknown:
            raise SystemExit(f"{folder}: class folder(s) the model does not know: {', '.join(unknown)}")
        self.paths = [dataset.root / rel for rel, _ in dataset.items]
        self.labels = [dataset.class_names[y] for _, y in dataset.items]
        self.y = np.array([classifier.labels.index(name) for name in self.labels])
        self.predictions: list[Prediction] = [classifier.classify_image(load_rgb(p), p.name) for p in self.paths]
        self.embeddings = np.stack([p.embedding for p in self.predictions])
        self.num_classes = len(classifier.labels)

    def pick(self, per_class: int, seed: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        return pick(self.y, per_class, seed)


def pick(y: NDArray[np.int64], per_class: int, seed: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """N photos of each class (fewer where a class is small), the rest to score on."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        rng.shuffle(members)
        chosen += list(members[: max(0, min(per_class, len(members) - MIN_SCORED))])
    picked = np.array(sorted(chosen), dtype=np.int64)
    return picked, np.setdiff1d(np.arange(len(y)), picked)


def probe(embeddings: NDArray[np.float32], y: NDArray[np.int64], num_classes: int, per_class: int,
          seed: int) -> float:
    """Site accuracy of a logistic regression fitted on the frozen embeddings of N photos per class alone."""
    picked, rest = pick(y, per_class, seed)
    head = fit_head(embeddings[picked], y[picked], np.ones(len(picked), np.float32), num_classes)
    return accuracy(head.probabilities(embeddings[rest]).argmax(axis=1), y[rest])


def store_decisions(data_dir: Path, site: Site, picked: NDArray[np.int64]) -> None:
    with Storage(data_dir, "bench-site") as storage:
        for i in picked:
            p = site.predictions[i]
            storage.save(NewDecision(load_rgb(site.paths[i]), p.label, p.confidence, p.probabilities_dict(),
                                     site.labels[i], p.model_version, p.embedding))


def accuracy(predicted: NDArray[np.int64], y: NDArray[np.int64]) -> float:
    return float((predicted == y).mean()) if len(y) else 0.0


def candidate_probabilities(bundle: Bundle, mode: str, site: Site, rest: NDArray[np.int64]) -> NDArray[np.float32]:
    """A fast candidate shares the running backbone: its head on the stored embeddings is exact and quick."""
    if mode == "fast":
        return Head.of(bundle.model).probabilities(site.embeddings[rest])
    images = np.stack([load_prepared(site.paths[i], bundle.image_size) for i in rest]).astype(np.float32)
    probabilities: NDArray[np.float32] = bundle.model.predict(images, batch_size=32, verbose=0)
    return probabilities


def auto_mode(bundle: Bundle, probabilities: NDArray[np.float32], y: NDArray[np.int64]) -> dict[str, float | None]:
    """Auto mode at the station's settings on the remaining photos, trusting only what the candidate's own
    cross-validated checks back (``station.trust``; the checks the operator would add live are left out):
    the share it would confirm alone, and how many of those are right."""
    defaults = load_settings()  # the station's settings: the shipped defaults, or the user's
    trust = SiteTrust(defaults.auto_trust_checks, defaults.auto_trust_precision, defaults.auto_threshold)
    trust.reset(enumerate(bundle_checks(bundle.metrics)))
    predicted, confidence = probabilities.argmax(axis=1), probabilities.max(axis=1)
    confident = confidence >= defaults.auto_threshold
    standing = {label: trust.standing(label) for label in bundle.labels}
    # The bare share, for comparison (not the station's rule): enough checks, at least the precision of them right.
    needed, share = max(1, defaults.auto_trust_checks), defaults.auto_trust_precision
    naive = {label: s.checks >= needed and s.right >= share * s.checks for label, s in standing.items()}
    result: dict[str, float | None] = {}
    for name, trusted in (("auto", {label: s.trusted for label, s in standing.items()}), ("naive", naive)):
        alone = confident & np.array([trusted[bundle.labels[p]] for p in predicted], dtype=bool)
        result[f"{name}_share"] = float(alone.mean()) if len(y) else None
        result[f"{name}_precision"] = float((predicted[alone] == y[alone]).mean()) if alone.any() else None
    return result


def run_point(site: Site, bundle_dir: Path, base_data: Path, mode: str, per_class: int, seed: int) -> dict[str, Any]:
    if mode == "probe":
        started = time.perf_counter()
        return {"site": probe(site.embeddings, site.y, site.num_classes, per_class, seed),
                "seconds": time.perf_counter() - started, "base": None, "gate": "", "promote": None}
    picked, rest = site.pick(per_class, seed)
    running = np.array([p.best_index for p in site.predictions])
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "station"
        store_decisions(data_dir, site, picked)
        result = run_retrain(RetrainJob(data_dir, bundle_dir, mode=Mode(mode), promote=Promote.NEVER,
                                            base_data_dir=base_data))
        candidate = load_bundle(result.candidate)
        probabilities = candidate_probabilities(candidate, mode, site, rest)
    return {
        "site": accuracy(probabilities.argmax(axis=1), site.y[rest]),
        "running_site": accuracy(running[rest], site.y[rest]), **auto_mode(candidate, probabilities, site.y[rest]),
        "base": result.candidate_metrics.base_test.accuracy,
        "running_base": result.current.base_test.accuracy,
        "seconds": result.seconds, "gate": result.gate_reason, "promote": result.gate_passed,
        "decisions": len(picked), "scored": len(rest),
    }


def mean_of(points: list[dict[str, Any]], key: str) -> float | None:
    values = [p[key] for p in points if p.get(key) is not None]
    return float(np.mean(values)) if values else None


def plot(results: dict[str, Any], compare: dict[str, Any] | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ns = results["per_class"]
    ax.axhline(results["running_site"], color="grey", linestyle=":", label="bundled model, no correction")
    for mode, rows in results["curves"].items():
        ax.plot(ns, [r["site"] for r in rows], marker="o", label=mode)
    if compare:
        for mode, rows in compare["curves"].items():
            if mode != "probe":
                ax.plot(compare["per_class"], [r["site"] for r in rows], marker="x", linestyle="--",
                        label=f"{mode} ({compare.get('label', 'before')})")
    ax.set_xlabel("corrections per class")
    ax.set_ylabel("site accuracy (remaining photos)")
    ax.set_title(f"site {results['site']}")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("site_dir", type=Path)
    parser.add_argument("--per-class", default="5,10,20,30,60", help="corrections per class, comma-separated")
    parser.add_argument("--modes", default="fast,probe", help="retraining modes (fast, full) and/or probe")
    parser.add_argument("--repeats", type=int, default=1, help="draws of the N photos per point, averaged")
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--base-data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--plot", type=Path, help="PNG of the curves (default: site_curve-<site>.png here)")
    parser.add_argument("--compare", type=Path, help="JSON line of an earlier run, drawn dashed")
    parser.add_argument("--label", default="", help="name of this run in a later --compare")
    args = parser.parse_args()
    per_class = [int(n) for n in args.per_class.split(",")]
    modes = [m for m in args.modes.split(",") if m]
    bundle_dir = bundle_or_exit(args.bundle)
    site_name = args.site_dir.resolve().name

    started = time.perf_counter()
    site = Site(args.site_dir, Classifier.load(bundle_dir))
    running = np.array([p.best_index for p in site.predictions])
    print(f"site {site_name}: {len(site.y)} photos; bundled model {accuracy(running, site.y):.3f} "
          f"(looked at in {time.perf_counter() - started:.0f} s)")
    print(f"{'N/class':>8} {'mode':>6} {'site acc':>9} {'running':>8} {'base acc':>9} {'running':>8} "
          f"{'seconds':>8} {'auto':>6} {'right':>6} {'naive':>6} {'right':>6}  gate")
    curves: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    for n in per_class:
        for mode in modes:
            points = [run_point(site, bundle_dir, args.base_data, mode, n, seed) for seed in range(args.repeats)]
            row = {"per_class": n, **{k: mean_of(points, k) for k in ("site", "running_site", "base", "running_base",
                                                                     "seconds", "auto_share", "auto_precision",
                                                                     "naive_share", "naive_precision")},
                   "promoted": sum(bool(p["promote"]) for p in points), "gate": points[0]["gate"]}
            curves[mode].append(row)

            def cell(value: float | None, width: int) -> str:
                return f"{value:>{width}.3f}" if value is not None else f"{'-':>{width}}"

            print(f"{n:>8} {mode:>6} {cell(row['site'], 9)} {cell(row['running_site'], 8)} {cell(row['base'], 9)} "
                  f"{cell(row['running_base'], 8)} {cell(row['seconds'], 8)} {cell(row['auto_share'], 6)} "
                  f"{cell(row['auto_precision'], 6)} {cell(row['naive_share'], 6)} {cell(row['naive_precision'], 6)}  "
                  f"{row['gate']}", flush=True)
    results = {"site": site_name, "label": args.label, "photos": len(site.y), "per_class": per_class,
               "repeats": args.repeats, "running_site": accuracy(running, site.y), "curves": curves}
    compare = json.loads(args.compare.read_text().strip().splitlines()[-1]) if args.compare else None
    path = args.plot or Path(f"site_curve-{site_name}.png")
    plot(results, compare, path)
    print(f"curves: {path}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
