"""Fast retraining core: a softmax head fitted on embeddings, site decisions weighted up."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.head import Head, fit_head, sample_weights
from training.model import load_bundle


def test_head_of_a_model_reproduces_its_probabilities(tiny_bundle_path: Path) -> None:
    bundle = load_bundle(tiny_bundle_path)
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    embeddings, probabilities = bundle.feature_model()(x)
    head = Head.of(bundle.model)
    np.testing.assert_allclose(head.probabilities(np.asarray(embeddings)), probabilities, atol=1e-5)


def domains(rng: np.random.Generator, n: int, site: bool) -> tuple[np.ndarray, np.ndarray]:
    """Three classes. On the site (another background) the usual cue points to the wrong class,
    and only a weaker cue, absent from the base photos, tells the truth."""
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 1.0, (n, 8))
    x[np.arange(n), (y + 1) % 3 if site else y] += 3.0
    if site:
        x[np.arange(n), 3 + y] += 2.0
    return x.astype(np.float32), y


def test_favouring_site_decisions_gains_more_on_the_site_domain() -> None:
    rng = np.random.default_rng(0)
    base_x, base_y = domains(rng, 3000, site=False)
    site_x, site_y = domains(rng, 60, site=True)
    test_x, test_y = domains(rng, 2000, site=True)
    x = np.vstack([base_x, site_x])
    y = np.concatenate([base_y, site_y])
    is_site = np.r_[np.zeros(len(base_y), bool), np.ones(len(site_y), bool)]

    def accuracy(site_share: float) -> float:
        weights = sample_weights(y, is_site, 3, site_share)
        head = fit_head(x, y, weights, 3)
        return float(np.mean(head.probabilities(test_x).argmax(1) == test_y))

    plain = accuracy(len(site_y) / len(y))  # every image counts the same
    favoured = accuracy(0.5)
    assert favoured > plain + 0.2, (plain, favoured)


def test_weights_balance_classes_and_give_the_site_its_share() -> None:
    labels = np.array([0] * 90 + [1] * 10 + [0, 1, 1, 2])
    is_site = np.r_[np.zeros(100, bool), np.ones(4, bool)]
    w = sample_weights(labels, is_site, 3, 0.5)
    assert w[is_site].sum() == pytest.approx(w[~is_site].sum())
    assert w[:90].sum() == pytest.approx(w[90:100].sum())  # balanced within the base group


def test_a_class_without_samples_is_never_predicted() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 5)).astype(np.float32)
    y = np.array([0, 2] * 20)
    head = fit_head(x, y, np.ones(40, np.float32), 3)
    assert head.probabilities(x)[:, 1].max() < 1e-6
    assert set(head.probabilities(x).argmax(1)) <= {0, 2}


def test_a_head_fitted_on_standardised_features_is_folded_into_a_plain_dense_layer() -> None:
    from training.head import Standardizer

    rng = np.random.default_rng(1)
    x = rng.normal(5.0, [0.1, 10.0, 1.0], (60, 3)).astype(np.float32)  # features on very different scales
    y = (x[:, 0] > 5.0).astype(np.int64) + (x[:, 2] > 5.0)
    standardizer = Standardizer.of(x)
    head = fit_head(x, y, np.ones(len(y), np.float32), 3, standardizer=standardizer)
    direct = fit_head(standardizer(x), y, np.ones(len(y), np.float32), 3)
    np.testing.assert_allclose(head.probabilities(x), direct.probabilities(standardizer(x)), atol=1e-5)


def test_the_site_share_grows_with_the_number_of_decisions() -> None:
    from training.head import site_share

    shares = [site_share(n, 30) for n in (0, 10, 30, 300, 3000)]
    assert shares[0] == 0.0 and shares[2] == 0.5
    assert shares == sorted(shares) and shares[-1] > 0.99


def prior_head() -> Head:
    """Three classes, each read off its own feature."""
    return Head(np.eye(3, dtype=np.float32) * 4.0, np.zeros(3, np.float32))


def test_without_evidence_the_anchored_head_stays_the_prior() -> None:
    x = np.random.default_rng(2).normal(size=(30, 3)).astype(np.float32)
    head = fit_head(x, np.zeros(30, np.int64), np.zeros(30, np.float32), 3, prior=prior_head())
    np.testing.assert_allclose(head.probabilities(x), prior_head().probabilities(x), atol=1e-5)


def test_the_anchor_keeps_what_a_few_decisions_do_not_speak_of() -> None:
    """Corrections of classes 0 and 1 only: anchored to the running head, class 2 is still recognised;
    fitted from zero, it is forgotten."""
    rng = np.random.default_rng(3)
    y = np.array([0, 1] * 5)
    x = (np.eye(3)[y] * 3 + rng.normal(0, 0.3, (10, 3))).astype(np.float32)
    third = (np.eye(3)[[2] * 20] * 3 + rng.normal(0, 0.3, (20, 3))).astype(np.float32)
    weights = np.ones(len(y), np.float32)
    anchored = fit_head(x, y, weights, 3, prior=prior_head())
    plain = fit_head(x, y, weights, 3)
    assert (anchored.probabilities(third).argmax(1) == 2).all()
    assert (plain.probabilities(third).argmax(1) != 2).all()
    assert (anchored.probabilities(x).argmax(1) == y).all()


def test_an_anchored_fit_on_standardised_features_starts_from_the_prior_exactly() -> None:
    from training.head import Standardizer

    rng = np.random.default_rng(4)
    x = rng.normal(2.0, [0.5, 3.0, 1.0], (40, 3)).astype(np.float32)
    standardizer = Standardizer.of(x)
    np.testing.assert_allclose(standardizer.fold(standardizer.unfold(prior_head())).kernel, prior_head().kernel,
                               atol=1e-5)
    head = fit_head(x, np.zeros(40, np.int64), np.zeros(40, np.float32), 3, standardizer=standardizer,
                    prior=prior_head())
    np.testing.assert_allclose(head.probabilities(x), prior_head().probabilities(x), atol=1e-4)
