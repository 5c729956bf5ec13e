"""The reference every model must beat: TF-IDF word n-grams + logistic regression (scikit-learn)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline


def fit_tfidf_lr(texts: Sequence[str], labels: Sequence[int], seed: int = 0) -> Pipeline:
    """Fit on the training rows (deterministic: lbfgs with a fixed seed)."""
    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
        LogisticRegression(max_iter=2000, C=4.0, random_state=seed),
    )
    return model.fit(list(texts), list(labels))


def predict_proba(model: Pipeline, texts: Sequence[str], num_labels: int) -> np.ndarray:
    """Probabilities over all ``num_labels`` classes (zero for a class absent from training)."""
    out = np.zeros((len(texts), num_labels))
    out[:, model.classes_] = model.predict_proba(list(texts))
    return out
