"""The evaluation metrics a TrainingRun reports, gates on and searches by.

Its own module so that the search spec and the TrainingRun spec share one enum (and
one CRD enum) without importing each other.
"""

from __future__ import annotations

from enum import StrEnum


class Metric(StrEnum):
    ACCURACY = "accuracy"
    BALANCED_ACCURACY = "balanced_accuracy"
    F1_MACRO = "f1_macro"
    ROC_AUC = "roc_auc"
    RMSE = "rmse"
    MAE = "mae"
    R2 = "r2"


CLASSIFICATION_METRICS = (Metric.ACCURACY, Metric.BALANCED_ACCURACY, Metric.F1_MACRO, Metric.ROC_AUC)
REGRESSION_METRICS = (Metric.RMSE, Metric.MAE, Metric.R2)
LOWER_IS_BETTER = frozenset({Metric.RMSE, Metric.MAE})
