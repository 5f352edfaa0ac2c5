"""Tried for real in a throw-away child by :mod:`.capabilities`: namespaces, mounts, capabilities.

Prints one JSON object ``{"netns": [ok, detail], "mntns": [ok, detail], "caps": [ok, detail]}``.
Not root, everything happens inside a new user namespace, as it will in the sandboxed child.
"""

from __future__ import annotations

import json
import os
import tempfile

from kerasguard.sandbox import _linux


def main(argv: list[str]) -> int:
    out: dict[str, tuple[bool, str]] = {}
    root = os.geteuid() == 0
    uid, gid = os.geteuid(), os.getegid()
    user_ns = False
    flags = _linux.CLONE_NEWNET | _linux.CLONE_NEWNS
    try:
        if root:
            _linux.unshare(flags)
        else:
            _linux.unshare(_linux.CLONE_NEWUSER | flags)
            _linux.write_id_maps(uid, gid)
            user_ns = True
        how = "CLONE_NEWNET" if root else "CLONE_NEWUSER|CLONE_NEWNET"
        out["netns"] = (True, how)
    except OSError as exc:
        why = f"unshare failed: {exc}" + ("" if root else " (unprivileged user namespaces disabled?)")
        out["netns"] = out["mntns"] = (False, why)
    if "mntns" not in out:
        point = tempfile.mkdtemp(prefix="kerasguard-probe-")
        try:
            _linux.mount(None, "/", None, _linux.MS_REC | _linux.MS_PRIVATE)
            _linux.mount("kerasguard-probe", point, "tmpfs", _linux.MS_NOSUID, "size=4096")
            _linux.umount(point, _linux.MNT_DETACH)
            where = "" if root else " (in a user namespace)"
            out["mntns"] = (True, f"private root: read-only binds, tmpfs scratch{where}")
        except OSError as exc:
            out["mntns"] = (False, f"mount failed: {exc}")
        finally:
            os.rmdir(point)
    try:
        if root or user_ns:
            _linux.drop_all_capabilities()
        ok = _linux.effective_capabilities() == 0
        if root:
            detail = "all capabilities dropped and locked"
        elif user_ns:
            detail = "the child's user namespace gives it every capability; it drops and locks them all"
        else:
            detail = "not root and no user namespace: the child has no capabilities"
        out["caps"] = (ok, detail)
    except OSError as exc:
        out["caps"] = (False, f"capset failed: {exc}")
    print(json.dumps(out))
    return 0
