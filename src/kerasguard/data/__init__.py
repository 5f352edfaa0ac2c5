"""kerasguard data: check training data, prove it with a manifest, find backdoor poison, guard training.

``check`` and ``find_backdoor`` return report objects (:mod:`kerasguard.data.report`);
``TrainingGuard`` is a ``keras.callbacks.Callback``. Everything is imported on first use: this
package needs the ``ml`` extra (numpy, scikit-learn, pyarrow, pillow) and, for the model side, Keras.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kerasguard._lazy import lazy_exports

if TYPE_CHECKING:
    from kerasguard.data.guard import TrainingGuard
    from kerasguard.data.manifest import data_manifest, verify_data_manifest
    from kerasguard.data.pipeline import check, find_backdoor
    from kerasguard.data.report import BackdoorReport, DataReport

_LAZY = {
    "check": "kerasguard.data.pipeline",
    "find_backdoor": "kerasguard.data.pipeline",
    "TrainingGuard": "kerasguard.data.guard",
    "data_manifest": "kerasguard.data.manifest",
    "verify_data_manifest": "kerasguard.data.manifest",
    "DataReport": "kerasguard.data.report",
    "BackdoorReport": "kerasguard.data.report",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())

__all__ = [
    "BackdoorReport",
    "DataReport",
    "TrainingGuard",
    "check",
    "data_manifest",
    "find_backdoor",
    "verify_data_manifest",
]
