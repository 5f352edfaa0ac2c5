"""The review console: server-rendered pages under ``/console/`` of ``kerasguard serve`` (docs/console.md).

Reviewers log in with their store token (reader, publisher or admin); the console then acts as them
through the store, which keeps enforcing every permission and auditing every change. It adds nothing a
token could not already do with ``kerasguard store``; it shows it.
"""

from kerasguard.console.web import create_console

__all__ = ["create_console"]
