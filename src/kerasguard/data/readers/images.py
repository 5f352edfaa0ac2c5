"""Image folders: one sub-folder per class, read with Pillow under a decompression-bomb limit.

The declared size is checked before any pixel is decoded (Pillow reads it from the header): an
image declaring more than ``MAX_PIXELS`` is refused (KGD902), as is anything Pillow flags as a bomb.
A file that is not an image is KGD901. Both mark the report incomplete. Images take the most common
(size, mode) of the folder; others are reported and left out. Links and special files are refused.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from kerasguard.data.dataset import Dataset, FloatArray, check_size
from kerasguard.data.ids import finding
from kerasguard.data.report import shown
from kerasguard.errors import DataError
from kerasguard.findings import Finding, Location

#: Largest image accepted, in pixels (Pillow's own default warns at ~89M and refuses at twice that).
MAX_PIXELS = 32 * 1024 * 1024
MAX_IMAGES = 500_000
SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _load(path: Path, source: str, rel: str, problems: list[Finding]) -> FloatArray | None:
    from PIL import Image

    loc = Location(file=source, member=shown(rel, 200))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                width, height = im.size
                if width * height > MAX_PIXELS:
                    problems.append(
                        finding(
                            "KGD902",
                            f"declares {width} x {height} pixels, more than the limit of {MAX_PIXELS}; "
                            "refused before decoding",
                            loc,
                        )
                    )
                    return None
                mode = "L" if im.mode in ("1", "L", "P", "I", "I;16", "F", "LA") else "RGB"
                return np.asarray(im.convert(mode), dtype=np.float64)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            problems.append(finding("KGD902", f"refused by Pillow's decompression-bomb guard: {exc}", loc))
        except (OSError, ValueError, SyntaxError) as exc:
            # UnidentifiedImageError is an OSError; truncated or corrupt data raise OSError/ValueError
            problems.append(finding("KGD901", f"not a readable image: {shown(exc, 200)}", loc))
        except Exception as exc:
            # Pillow's format plugins raise a variety of errors on hostile input: never a traceback
            problems.append(
                finding("KGD901", f"Pillow failed on this file: {shown(type(exc).__name__)}", loc)
            )
    return None


def read_image_folder(root: Path) -> Dataset:
    """Every image under ``root/<class>/``; classes sorted by folder name."""
    source = str(root)
    problems: list[Finding] = []
    try:
        class_dirs = sorted((e for e in os.scandir(root) if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as exc:
        raise DataError(f"{source}: cannot list: {exc.strerror or exc}") from None
    classes = [e for e in class_dirs if e.is_dir(follow_symlinks=False)]
    for entry in class_dirs:
        if entry.is_symlink():
            problems.append(
                finding(
                    "KGD901",
                    "a link in the image folder; refused (it can point outside the data)",
                    Location(file=source, member=shown(entry.name, 200)),
                )
            )
    if not classes:
        raise DataError(f"{source}: no class sub-folders (an image folder holds one folder per class)")
    arrays: list[FloatArray] = []
    total = 0
    labels: list[int] = []
    names: list[str] = []
    for index, entry in enumerate(classes):
        for item in sorted(os.scandir(entry.path), key=lambda e: e.name):
            rel = f"{entry.name}/{item.name}"
            if item.name.startswith("."):
                continue
            st = item.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):
                problems.append(
                    finding(
                        "KGD901",
                        "not a regular file (link, folder or device); refused",
                        Location(file=source, member=shown(rel, 200)),
                    )
                )
                continue
            if len(arrays) >= MAX_IMAGES:
                raise DataError(f"{source}: more than {MAX_IMAGES} images")
            pixels = _load(Path(item.path), source, rel, problems)
            if pixels is None:
                continue
            total += pixels.size
            check_size(source, total, 1)  # many large images: refused as they add up, not at the end
            arrays.append(pixels)
            labels.append(index)
            names.append(rel)
    if not arrays:
        raise DataError(f"{source}: no readable images")
    common = Counter(a.shape for a in arrays).most_common(1)[0][0]
    keep = [i for i, a in enumerate(arrays) if a.shape == common]
    for i, a in enumerate(arrays):
        if a.shape != common:
            problems.append(
                finding(
                    "KGD101",
                    f"image shape {a.shape} differs from the folder's {common}; left out",
                    Location(file=source, member=shown(names[i], 200)),
                )
            )
    per_sample = int(np.prod(common))
    check_size(source, len(keep), per_sample)
    matrix = np.stack([arrays[i].reshape(-1) for i in keep])
    del arrays
    dataset = Dataset(
        source=source,
        kind="images",
        names=[f"px{j}" for j in range(per_sample)],
        columns=[matrix[:, j] for j in range(per_sample)],
        labels=np.asarray([labels[i] for i in keep], dtype=np.int64),
        class_names=tuple(e.name for e in classes),
        sample_names=[names[i] for i in keep],
        matrix_shape=tuple(int(s) for s in common),
        _matrix=matrix,
    )
    dataset.problems.extend(problems)
    return dataset
