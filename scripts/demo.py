"""Demo: save a benign model and craft malicious ones with real Keras, then scan them all.

Run by `make demo`. Exits 0 when kerasguard judges every file as expected (benign clean, attacks caught).
The malicious files are built from the published mechanisms of the Keras loading advisories
(docs/rules.md); nothing is loaded.
"""

from __future__ import annotations

import base64
import io
import json
import marshal
import os
import subprocess
import sys
import zipfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

OUT = Path(os.environ.get("KERASGUARD_DEMO_DIR", "demo"))


def save_benign(path: Path) -> None:
    import keras

    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)], name="demo"
    )
    model.save(path)


def rewrite_member(src: Path, dst: Path, name: str, data: bytes) -> None:
    """Copy a .keras archive, replacing one member (stored, as Keras writes them)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, data if info.filename == name else zin.read(info.filename))


def lambda_rce(benign: Path, dst: Path) -> None:
    """CVE-2024-3660 class: a Lambda layer whose bytecode calls os.system when the graph is rebuilt."""

    def payload(x):  # type: ignore[no-untyped-def]  # never called here: only its bytecode is stored
        import os

        os.system("echo pwned > /tmp/kerasguard-demo-pwned")  # noqa: S605 - the attack being demonstrated
        return x

    code = base64.b64encode(marshal.dumps(payload.__code__)).decode()
    with zipfile.ZipFile(benign) as z:
        config = json.loads(z.read("config.json"))
    layers = config["config"]["layers"]
    layers.insert(
        1,
        {
            "module": "keras.layers",
            "class_name": "Lambda",
            "registered_name": None,
            "config": {
                "name": "innocent_rescale",
                "function": {
                    "class_name": "__lambda__",
                    "config": {"code": code, "defaults": None, "closure": None},
                },
                "arguments": {},
            },
        },
    )
    rewrite_member(benign, dst, "config.json", json.dumps(config).encode())


def shape_bomb(benign: Path, dst: Path) -> None:
    """CVE-2026-0897 class: a weights dataset declaring 9.3 GB that stores almost nothing."""
    import h5py

    with zipfile.ZipFile(benign) as z:
        weights = z.read("model.weights.h5")
    buf = io.BytesIO(weights)
    with h5py.File(buf, "r+") as h5:
        del h5["layers/dense/vars/0"]
        h5.create_dataset(
            "layers/dense/vars/0",
            shape=(50_000, 50_000),
            dtype="float32",
            chunks=(1000, 1000),
            compression="gzip",
        )
    rewrite_member(benign, dst, "model.weights.h5", buf.getvalue())


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    benign = OUT / "benign.keras"
    save_benign(benign)
    lambda_rce(benign, OUT / "lambda_rce.keras")
    shape_bomb(benign, OUT / "shape_bomb.keras")
    expected = {"benign.keras": 0, "lambda_rce.keras": 1, "shape_bomb.keras": 1}
    ok = True
    for name, want in expected.items():
        print(f"\n$ kerasguard scan {OUT / name}", flush=True)
        rc = subprocess.call([sys.executable, "-m", "kerasguard", "scan", str(OUT / name)])
        verdict = "as expected" if rc == want else f"UNEXPECTED (wanted exit {want})"
        print(f"exit code {rc}: {verdict}", flush=True)
        ok &= rc == want
    print("\ndemo " + ("passed: the benign model is clean and both attacks were caught" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
