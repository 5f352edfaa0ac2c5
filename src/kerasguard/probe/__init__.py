"""kerasguard probe: what a model *does*. Backdoor search (Neural Cleanse + MAD), a STRIP runtime
detector, and membership-inference tests (loss, confidence, offline LiRA). See docs/probe.md.

The trigger search and LiRA are white-box (the real Keras model in this process); STRIP and the loss
and confidence attacks need only predictions, so they also run on a sandboxed model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kerasguard._lazy import lazy_exports

if TYPE_CHECKING:
    from kerasguard.probe.backdoor import BackdoorReport, find_backdoor
    from kerasguard.probe.membership import ReferenceTraining
    from kerasguard.probe.privacy import PrivacyReport, membership_leak
    from kerasguard.probe.strip import StripDetector, fit_strip
    from kerasguard.probe.trigger import SearchConfig

# Lazy: these pull in NumPy and, when they run, Keras; importing kerasguard.probe must stay cheap.
_LAZY = {
    "BackdoorReport": "kerasguard.probe.backdoor",
    "find_backdoor": "kerasguard.probe.backdoor",
    "ReferenceTraining": "kerasguard.probe.membership",
    "PrivacyReport": "kerasguard.probe.privacy",
    "membership_leak": "kerasguard.probe.privacy",
    "StripDetector": "kerasguard.probe.strip",
    "fit_strip": "kerasguard.probe.strip",
    "SearchConfig": "kerasguard.probe.trigger",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())

__all__ = [
    "BackdoorReport",
    "PrivacyReport",
    "ReferenceTraining",
    "SearchConfig",
    "StripDetector",
    "find_backdoor",
    "fit_strip",
    "membership_leak",
]
