"""Adversarial robustness: attacks, robust accuracy, adversarial training, input detectors.

Importing this package imports NumPy but not Keras; the backend is imported when a model is used.
See docs/robustness.md.
"""

from __future__ import annotations

from kerasguard.robustness.attacks import AttackOutcome, AttackSpec, choose_targets, run_attack
from kerasguard.robustness.data import Dataset, load_dataset, make_dataset
from kerasguard.robustness.detector_eval import DetectorReport, evaluate_detectors
from kerasguard.robustness.detector_files import load_detectors, save_detectors
from kerasguard.robustness.detectors import DetectorSet, KerasFeatures, SandboxedFeatures, fit_detectors
from kerasguard.robustness.engines import as_classifier
from kerasguard.robustness.errors import DetectorFileError, NoGradientError, RobustnessError
from kerasguard.robustness.evaluate import RobustnessReport, evaluate
from kerasguard.robustness.training import TrainingReport, adversarial_fit

__all__ = [
    "AttackOutcome",
    "AttackSpec",
    "Dataset",
    "DetectorFileError",
    "DetectorReport",
    "DetectorSet",
    "KerasFeatures",
    "NoGradientError",
    "RobustnessError",
    "RobustnessReport",
    "SandboxedFeatures",
    "TrainingReport",
    "adversarial_fit",
    "as_classifier",
    "choose_targets",
    "evaluate",
    "evaluate_detectors",
    "fit_detectors",
    "load_dataset",
    "load_detectors",
    "make_dataset",
    "run_attack",
    "save_detectors",
]
