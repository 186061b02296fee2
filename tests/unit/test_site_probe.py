"""The frozen-feature probe the site and backbone benches share: its draws and its score."""

from __future__ import annotations

import numpy as np

from bench.site_curve import MIN_SCORED, pick, probe


def test_pick_takes_n_per_class_and_always_leaves_photos_to_score() -> None:
    y = np.repeat(np.arange(3), [20, 20, 10])  # the third class is small
    picked, rest = pick(y, per_class=5, seed=0)
    assert np.bincount(y[picked]).tolist() == [5, 5, 2]  # 10 - MIN_SCORED: a small class keeps photos to score
    assert np.bincount(y[rest]).tolist() == [15, 15, MIN_SCORED]
    assert set(picked).isdisjoint(rest) and len(picked) + len(rest) == len(y)
    assert np.array_equal(pick(y, 5, seed=0)[0], picked) and not np.array_equal(pick(y, 5, seed=1)[0], picked)


def test_probe_scores_separable_features_high_and_noise_near_chance() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 40)
    separable = (np.eye(4)[y] * 5 + rng.normal(size=(len(y), 4))).astype(np.float32)
    noise = rng.normal(size=(len(y), 16)).astype(np.float32)
    assert probe(separable, y, 4, per_class=10, seed=0) > 0.95
    assert probe(noise, y, 4, per_class=10, seed=0) < 0.5
