"""Arrays from ``.npz`` files, never unpickled: each member's ``.npy`` header is judged first.

One reader for every labelled-data command (``data``, ``probe``, ``robustness``). A member's header
(magic, dtype, shape) is read with NumPy's own literal parser and checked before a byte of its data is
read: object and structured dtypes are refused (an object array is a pickle), and the declared size must
fit the member and the caller's limits, so a 40-byte member that declares a terabyte allocates nothing.
Data is then read with ``allow_pickle=False``. Errors are raised as the caller's own error class.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from kerasguard.errors import KerasGuardError

MAX_HEADER = 10_000  # bytes of an .npy header's dict literal
MAX_MEMBERS = 64


def npy_header(
    fp: IO[bytes], name: str, error: type[KerasGuardError], *, max_values: int | None = None
) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """(shape, dtype, header length) of an .npy stream; refuse what is not a plain numeric array."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, _fortran, dtype = fmt.read_array_header_1_0(fp, max_header_size=MAX_HEADER)
        elif version == (2, 0):
            shape, _fortran, dtype = fmt.read_array_header_2_0(fp, max_header_size=MAX_HEADER)
        else:
            raise error(f"{name}: .npy format version {version} is not supported (1.0 and 2.0 are)")
    except (ValueError, OSError, EOFError) as exc:
        raise error(f"{name}: not a valid .npy array: {exc}") from None
    if dtype.hasobject:
        raise error(
            f"{name}: object dtype ({dtype}): it holds pickled objects; refused, never unpickled",
            hint="save the data as a numeric array (numpy.save with a float or int dtype)",
        )
    if dtype.kind not in "biuf" or dtype.fields is not None:
        raise error(f"{name}: dtype {dtype} is not a plain numeric type")
    count = math.prod(int(d) for d in shape)
    if max_values is not None and count > max_values:
        raise error(f"{name}: declares {shape} = {count} values, more than kerasguard loads ({max_values})")
    return tuple(int(d) for d in shape), dtype, fp.tell()


def check_headers(
    zf: zipfile.ZipFile,
    limit: int,
    where: str,
    error: type[KerasGuardError],
    names: Sequence[str] | None = None,
    *,
    max_values: int | None = None,
) -> None:
    """Refuse before any array is read: too many members, a member that is not a plain numeric array,
    one whose data is shorter than its header declares, or more than ``limit`` bytes declared in all
    (NumPy allocates what a header declares). ``names``: only these members (default: all)."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise error(f"{where}: {len(infos)} arrays; at most {MAX_MEMBERS} are read")
    total = 0
    for info in infos:
        if names is not None and info.filename.removesuffix(".npy") not in names:
            continue
        label = f"{where}!/{info.filename}"
        with zf.open(info) as fh:
            shape, dtype, offset = npy_header(fh, label, error, max_values=max_values)
        size = math.prod(shape) * dtype.itemsize
        total += size
        if total > limit:
            raise error(f"{where}: its arrays declare more than {limit} bytes")
        if info.file_size < offset + size:
            raise error(f"{label}: truncated: header declares {shape} {dtype}")


def read_npz(
    path: str | os.PathLike[str],
    pick: Callable[[list[str]], Sequence[str]],
    error: type[KerasGuardError],
    *,
    limit: int,
    max_values: int | None = None,
    what: str | None = None,
) -> dict[str, np.ndarray]:
    """The members ``pick`` chooses among the archive's array names, headers checked first
    (:func:`check_headers`, at most ``limit`` bytes declared). ``pick`` may raise ``error`` itself."""
    p = Path(path)
    where = f"{what} {p}" if what else str(p)
    try:
        with zipfile.ZipFile(p) as zf:
            keys = sorted(i.filename[:-4] for i in zf.infolist() if i.filename.endswith(".npy"))
            wanted = list(pick(keys))
            check_headers(zf, limit, where, error, wanted, max_values=max_values)
            arrays = {}
            for key in wanted:
                with zf.open(f"{key}.npy") as fh:
                    arrays[key] = np.lib.format.read_array(fh, allow_pickle=False)
            return arrays
    except KerasGuardError:
        raise
    except FileNotFoundError:
        raise error(f"cannot read {where}: no such file") from None
    except MemoryError:
        raise error(f"cannot read {where}: not enough memory for its arrays") from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise error(f"cannot read {where}: not a readable .npz of numeric arrays: {exc}") from None
