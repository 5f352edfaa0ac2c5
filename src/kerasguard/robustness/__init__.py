"""Adversarial robustness: attacks, robust accuracy, adversarial training, input detectors.

Importing this package imports NumPy but not Keras; the backend is imported when a model is used.
See docs/robustness.md.
"""

from __future__ import annotations

from kerasguard.robustness.attacks import AttackOutcome, AttackSpec, choose_targets, run_attack
from kerasguard.robustness.data import Dataset, load_dataset, make_dataset
from kerasguard.robustness.engines import as_classifier
from kerasguard.robustness.errors import DetectorFileError, NoGradientError, RobustnessError
from kerasguard.robustness.evaluate import RobustnessReport, evaluate
from kerasguard.robustness.training import TrainingReport, adversarial_fit

__all__ = [
    "AttackOutcome",
    "AttackSpec",
    "Dataset",
    "DetectorFileError",
    "NoGradientError",
    "RobustnessError",
    "RobustnessReport",
    "TrainingReport",
    "adversarial_fit",
    "as_classifier",
    "choose_targets",
    "evaluate",
    "load_dataset",
    "make_dataset",
    "run_attack",
]
