"""The model store: admission, encryption at rest, access control and a hash-chained audit log.

Needs the ``store`` extra (SQLAlchemy, Alembic, cryptography, psycopg). See ``docs/store.md``.
"""

from __future__ import annotations

from kerasguard.store.attachments import Attachment, AttachmentError, NewAttachment
from kerasguard.store.crypto import MasterKey
from kerasguard.store.keys import load_master_key, write_key_file
from kerasguard.store.rbac import Action, Role
from kerasguard.store.records import ModelInfo, ModelSummary
from kerasguard.store.service import AccessDenied, ModelStore

__all__ = [
    "AccessDenied",
    "Action",
    "Attachment",
    "AttachmentError",
    "MasterKey",
    "ModelInfo",
    "ModelStore",
    "ModelSummary",
    "NewAttachment",
    "Role",
    "load_master_key",
    "write_key_file",
]
