"""``StoreParts``: what the push, pull, attachment and upgrade code needs from an open store.

``ModelStore`` (service.py) builds one and passes it down, so ``ingest``, ``egress``, ``attachments``
and ``upgrade`` never import the service (no import circle) and cannot reach anything else in it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from kerasguard.policy import Policy
from kerasguard.store.blobs import BlobStore
from kerasguard.store.crypto import MasterKey
from kerasguard.store.perms import Modes

if TYPE_CHECKING:
    from kerasguard.store import audit


@dataclass(frozen=True)
class StoreParts:
    """The open store's pieces: blobs, keys, policy, transactions and the audit log."""

    blobs: BlobStore
    master: MasterKey
    policy: Policy
    modes: Modes
    pending_mark: str  # the reason a pending row of this node carries (recovery finds them by it)
    transaction: Callable[[], contextlib.AbstractContextManager[Session]]
    record_event: Callable[[audit.Event], None]

    @property
    def audit_key(self) -> bytes:
        return self.master.audit_key
