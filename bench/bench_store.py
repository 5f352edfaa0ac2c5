"""Store benchmark: push/pull of a 1 GiB model against a plain file copy, and `list` over 10,000 models.

    KERAS_BACKEND=jax python bench/bench_store.py [--size-mib 1024] [--models 10000] [--workdir /tmp]

Push = read + SHA-256 + AES-256-GCM + write ciphertext, fsync and rename, with the checks reading a hard
link to the open file (same filesystem); "push from another filesystem" also writes the private plaintext
copy the checks read (source on /dev/shm). Pull = read + decrypt + SHA-256 + write + fsync + rename. The scan
itself is skipped here (``allow_unsafe_skip_scan``): scanning cost follows the model's metadata, not
its size, and is measured by the scan benchmarks. The copy baseline is ``shutil.copyfile`` of the same
file in the same run, warm cache, followed by an fsync so both sides make the data durable.

The 10,000 models for ``list`` are inserted as complete, MAC-protected rows in one transaction (a
push per row would measure the fsyncs of 10,000 pushes, not ``list``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from kerasguard.policy import Policy, Store, Trust
from kerasguard.store import MasterKey, ModelStore, audit
from kerasguard.store.db import ModelRow
from kerasguard.store.records import seal

POLICY = Policy(store=Store(sources=("https://bench.example",)), trust=Trust(allow_unsafe_skip_scan=True))
MiB = 1 << 20


def write_random(path: Path, size: int) -> None:
    block = os.urandom(16 * MiB)
    with open(path, "wb") as fh:
        written = 0
        while written < size:
            n = min(len(block), size - written)
            fh.write(block[:n] if n < len(block) else block)
            block = block[1:] + block[:1] if written % (64 * MiB) == 0 else block
            written += n


def timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def copy_with_fsync(src: Path, dst: Path) -> None:
    shutil.copyfile(src, dst)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def bench_throughput(work: Path, size: int, rounds: int) -> dict[str, object]:
    model = work / "model.keras"
    write_random(model, size)
    with open(model, "rb") as fh:  # warm the page cache for every contender alike
        while fh.read(64 * MiB):
            pass
    # A second copy of the model on another filesystem (tmpfs): a push from there cannot hard-link the
    # file into its staging folder and writes a private plaintext copy in the same pass instead.
    other_fs = Path("/dev/shm") / f"kg-bench-{os.getpid()}.keras"
    shutil.copyfile(model, other_fs)
    store, admin = ModelStore.init(work / "store", MasterKey.generate(), policy=POLICY)
    copies, pushes, pulls, copied_pushes = [], [], [], []
    try:
        for i in range(rounds):
            target = work / f"copy-{i}.keras"
            copies.append(timed(lambda target=target: copy_with_fsync(model, target)))
            target.unlink()
            version = str(i)
            pushes.append(
                timed(
                    lambda version=version: store.push(
                        admin, model, name="big", version=version, source="https://bench.example/big",
                        namespace="bench",
                    )
                )
            )  # fmt: skip
            copied_pushes.append(
                timed(
                    lambda version=version: store.push(
                        admin, other_fs, name="big-other-fs", version=version,
                        source="https://bench.example/big", namespace="bench",
                    )
                )
            )  # fmt: skip
            out = work / f"pulled-{i}.keras"
            pulls.append(
                timed(
                    lambda out=out, version=version: store.pull(admin, "big", version, out, namespace="bench")
                )
            )
            out.unlink()
    finally:
        store.close()
        other_fs.unlink()
    copy_s, push_s, pull_s, copied_s = (statistics.median(x) for x in (copies, pushes, pulls, copied_pushes))
    gib = size / (1 << 30)
    return {
        "size_bytes": size,
        "rounds": rounds,
        "copy_s": round(copy_s, 3),
        "push_s": round(push_s, 3),
        "pull_s": round(pull_s, 3),
        "copy_gib_s": round(gib / copy_s, 3),
        "push_gib_s": round(gib / push_s, 3),
        "pull_gib_s": round(gib / pull_s, 3),
        "push_vs_copy": round(copy_s / push_s, 3),
        "push_private_copy_s": round(copied_s, 3),
        "push_private_copy_vs_copy": round(copy_s / copied_s, 3),
        "pull_vs_copy": round(copy_s / pull_s, 3),
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def bench_list(work: Path, count: int) -> dict[str, object]:
    master = MasterKey.generate()
    store, admin = ModelStore.init(work / "list-store", master, policy=POLICY)
    try:
        now = "2026-01-01T00:00:00+00:00"
        rows = []
        for i in range(count):
            row = ModelRow(
                namespace="bench", name=f"model-{i // 10:05d}", version=f"{i % 10}.0.0", status="admitted",
                stage="production", filename="model.keras", digest="sha256:" + f"{i:064x}", size=1 << 20,
                source="https://bench.example/models", signer=None, blob_id=f"{i:032x}",
                wrapped_key=os.urandom(61), key_id=master.key_id, created_at=now, created_by="bench",
                updated_at=now, reason=None, details_digest="sha256:" + "0" * 64, revision=1,
                row_mac="", list_mac="",
            )  # fmt: skip
            seal(row, master.mac_key)
            rows.append(row)
        with store.transaction() as session:
            session.add_all(rows)
            for row in rows:  # the admission entries that record each row's revision (what push writes)
                audit.append(
                    session,
                    audit.Event(
                        actor="bench", action="push", result="admitted", namespace=row.namespace,
                        model=row.name, version=row.version, digest=row.digest,
                        subject=audit.model_subject(row.namespace, row.name, row.version), revision=1,
                    ),
                    store.audit_key,
                )  # fmt: skip
        timings, cpu = [], []
        for _ in range(9):
            start, start_cpu = time.perf_counter(), time.process_time()
            listed = store.list(admin, namespace="bench")
            timings.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            assert len(listed) == count
    finally:
        store.close()
    return {
        "models": count,
        "list_ms_median": round(statistics.median(timings) * 1000, 1),
        "list_ms_min": round(min(timings) * 1000, 1),
        "list_cpu_ms_median": round(statistics.median(cpu) * 1000, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--workdir", default=None, help="where the temporary files go (default: $TMPDIR)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kg-bench-store-", dir=args.workdir) as tmp:
        work = Path(tmp)
        results = {
            "throughput": bench_throughput(work, args.size_mib * MiB, args.rounds),
            "list": bench_list(work, args.models),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "python": sys.version.split()[0],
        }
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
