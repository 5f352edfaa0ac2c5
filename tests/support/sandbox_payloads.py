"""Lambda payloads for sandbox tests, stored as Keras `__lambda__` bytecode in a real model's config.

The models are built by editing the config of a real saved MLP (as an attacker would), so the payload
never runs in the test process. Each payload reports what happened through the model's output:
``-1`` means the action succeeded, a positive number is the errno that stopped it.
"""

from __future__ import annotations

import base64
import marshal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.attacks import _lambda_layer, _layers, edit_config

SUCCEEDED = -1.0


def lambda_model(base: Path, dst: Path, fn: Callable[..., Any], **arguments: Any) -> Path:
    """Append a bytecode Lambda calling ``fn(x, **arguments)`` to the Sequential model ``base``."""
    code = base64.b64encode(marshal.dumps(fn.__code__)).decode()
    spec = {"class_name": "__lambda__", "config": {"code": code, "defaults": None, "closure": None}}
    return edit_config(base, dst, lambda c: _layers(c).append(_lambda_layer(spec, arguments=arguments)))


def escape_attempts(x, port=0, secret="", outside="", exec_marker=""):  # type: ignore[no-untyped-def]
    """Try (a) a TCP connect, (b) reading a secret, (c) writing outside scratch, (d) running a program."""
    import socket
    import subprocess

    import numpy as np

    codes = []
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2.0)
        s.connect(("127.0.0.1", port))
        s.close()
        codes.append(-1.0)
    except OSError as exc:
        codes.append(float(exc.errno or 999))
    try:
        with open(secret, encoding="utf-8") as fh:
            fh.read()
        codes.append(-1.0)
    except OSError as exc:
        codes.append(float(exc.errno or 999))
    try:
        with open(outside, "w", encoding="utf-8") as fh:
            fh.write("escaped")
        codes.append(-1.0)
    except OSError as exc:
        codes.append(float(exc.errno or 999))
    try:
        subprocess.run(["/bin/sh", "-c", "touch " + exec_marker], check=True, timeout=10)
        codes.append(-1.0)
    except OSError as exc:
        codes.append(float(exc.errno or 999))
    except subprocess.SubprocessError:
        codes.append(998.0)
    return x[:, :1] * 0 + np.array(codes, dtype="float32")


def noisy(x):  # type: ignore[no-untyped-def]
    """Print to stdout and stderr, and write a fake protocol frame straight to fd 1."""
    import os
    import sys

    print("hello from the model " * 100)
    print("KGS1 this is not a frame", file=sys.stderr)
    os.write(1, b"KGS1\xff\xff\xff\xff" + b"\x00" * 64)
    sys.stdout.flush()
    return x


def hang(x):  # type: ignore[no-untyped-def]
    """Hang on real data (2 rows), in predict, not while Keras builds the model at load."""
    import time

    if x.shape[0] == 2:
        time.sleep(3600)
    return x


def exit_now(x, status=7):  # type: ignore[no-untyped-def]
    import os

    os._exit(status)


def segfault(x, status=0):  # type: ignore[no-untyped-def]
    import os
    import signal

    os.kill(os.getpid(), signal.SIGSEGV)
    return x


def big_file(x, mib=4):  # type: ignore[no-untyped-def]
    import os

    with open(os.path.join(os.environ["TMPDIR"], "big.bin"), "wb") as fh:
        for _ in range(mib):
            fh.write(b"\0" * (1 << 20))
    return x


def grow_memory(x, step_mib=32):  # type: ignore[no-untyped-def]
    import numpy as np

    hoard = []
    while True:
        block = np.empty(step_mib << 20, dtype=np.uint8)
        block.fill(1)
        hoard.append(block)


def host_reach(x, unix_paths=(), abstract="", tcp_port=0, host_file="", fill_mib=0):  # type: ignore[no-untyped-def]
    """Try every way out through sockets, look at the host's /run and /tmp, and fill scratch.

    Codes, in order: one per path in ``unix_paths`` (connect), the abstract socket ``abstract``,
    TCP to 127.0.0.1:``tcp_port``, socketpair, listing /run, reading ``host_file``, signalling the
    parent (signal 0), F_SETOWN to the parent; then the MiB
    found in scratch after writing up to ``fill_mib`` MiB into it (not an errno).
    """
    import os
    import socket

    import numpy as np

    def attempt(action):  # type: ignore[no-untyped-def]
        try:
            action()
            return -1.0
        except OSError as exc:
            return float(exc.errno or 999)

    def unix(address):  # type: ignore[no-untyped-def]
        def go():  # type: ignore[no-untyped-def]
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.settimeout(2.0)
                s.connect(address)
            finally:
                s.close()

        return go

    def tcp():  # type: ignore[no-untyped-def]
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.settimeout(2.0)
            s.connect(("127.0.0.1", tcp_port))
        finally:
            s.close()

    def pair():  # type: ignore[no-untyped-def]
        a, b = socket.socketpair()
        a.close()
        b.close()

    def listing(path):  # type: ignore[no-untyped-def]
        def go():  # type: ignore[no-untyped-def]
            if not os.listdir(path):
                raise FileNotFoundError(2, "empty")

        return go

    codes = [attempt(unix(p)) for p in unix_paths]
    codes.append(attempt(unix("\0" + abstract)))
    codes += [attempt(tcp), attempt(pair), attempt(listing("/run")), attempt(lambda: open(host_file).close())]
    codes.append(attempt(lambda: os.kill(os.getppid(), 0)))  # signal 0: a permission check only

    def set_owner():  # type: ignore[no-untyped-def]
        import fcntl

        fcntl.fcntl(1, fcntl.F_SETOWN, os.getppid())  # SIGIO/SIGURG of fd 1 would go to the parent
        fcntl.fcntl(1, fcntl.F_SETOWN, 0)

    codes.append(attempt(set_owner))
    scratch = os.environ["TMPDIR"]
    block = b"\1" * (1 << 20)
    for i in range(fill_mib):
        try:
            with open(os.path.join(scratch, f"fill-{i}.bin"), "wb") as fh:
                fh.write(block)
        except OSError:
            break
    used = 0
    for root, _, files in os.walk(scratch):
        for name in files:
            used += os.path.getsize(os.path.join(root, name))
    codes.append(used / (1 << 20))
    return x[:, :1] * 0 + np.array(codes, dtype="float32")


def outlive_parent(x, marker=""):  # type: ignore[no-untyped-def]
    """Try to survive the parent: os._exit does nothing, a non-daemon thread never ends, and the
    usual termination signals are ignored."""
    import os
    import signal
    import threading
    import time

    os._exit = lambda *args, **kwargs: None
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGPIPE):
        try:
            signal.signal(sig, signal.SIG_IGN)
        except (ValueError, OSError):
            continue

    def forever():  # type: ignore[no-untyped-def]
        import ctypes

        ctypes.CDLL(None).prctl(15, marker.encode()[:15], 0, 0, 0)  # PR_SET_NAME: visible in /proc
        while True:
            time.sleep(0.5)

    threading.Thread(target=forever, name=marker, daemon=False).start()
    return x


def int80(x, number=20):  # type: ignore[no-untyped-def]
    """Run a real i386 system call (``int 0x80``, getpid) from machine code in an executable page."""
    import ctypes
    import mmap

    # mov eax, number; int 0x80; ret
    code = b"\xb8" + number.to_bytes(4, "little") + b"\xcd\x80\xc3"
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    ctypes.CFUNCTYPE(ctypes.c_int)(address)()
    return x


def spin_in_predict(x):  # type: ignore[no-untyped-def]
    """Spin only when run on real data (2 rows), not while Keras builds the model symbolically."""
    if x.shape[0] == 2:
        while True:
            pass
    return x


def fill_scratch(x, mib=0):  # type: ignore[no-untyped-def]
    """Fill scratch with ``mib`` files of 1 MiB each (each below the per-file limit) and keep them."""
    import os
    import time

    block = b"\1" * (1 << 20)
    for i in range(mib):
        try:
            with open(os.path.join(os.environ["TMPDIR"], f"fill-{i}.bin"), "wb") as fh:
                fh.write(block)
        except OSError:
            break
    time.sleep(5)
    return x


def undo_parent_death_signal(x, marker=""):  # type: ignore[no-untyped-def]
    """``outlive_parent`` that first asks the kernel to forget the parent-death signal.

    Codes, in order: clearing it through libc's ``prctl``, clearing it through the raw system call
    with the option's upper 32 bits set (the kernel reads an int), letting any process ptrace the
    child (``PR_SET_PTRACER``), then the signal still set after all that (``PR_GET_PDEATHSIG``; not
    an errno).
    """
    import ctypes
    import os
    import threading
    import time

    import numpy as np

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long

    def attempt(call):  # type: ignore[no-untyped-def]
        ctypes.set_errno(0)
        return -1.0 if call() == 0 else float(ctypes.get_errno() or 999)

    codes = [attempt(lambda: libc.prctl(1, ctypes.c_ulong(0), 0, 0, 0))]  # PR_SET_PDEATHSIG, 0
    codes.append(attempt(lambda: libc.syscall(ctypes.c_long(157), ctypes.c_long((1 << 32) | 1), 0, 0, 0, 0)))
    any_process = ctypes.c_ulong(2**64 - 1)
    codes.append(attempt(lambda: libc.prctl(0x59616D61, any_process, 0, 0, 0)))  # PR_SET_PTRACER
    current = ctypes.c_int(-1)
    libc.prctl(2, ctypes.byref(current), 0, 0, 0)  # PR_GET_PDEATHSIG
    codes.append(float(current.value))
    os._exit = lambda *args, **kwargs: None

    def forever():  # type: ignore[no-untyped-def]
        libc.prctl(15, marker.encode()[:15], 0, 0, 0)  # PR_SET_NAME: visible in /proc
        while True:
            time.sleep(0.5)

    if not any(t.name == marker for t in threading.enumerate()):
        threading.Thread(target=forever, name=marker, daemon=False).start()
    return x[:, :1] * 0 + np.array(codes, dtype="float32")
