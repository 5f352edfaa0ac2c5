"""kerasguard data benchmark: backdoor detection against ART, and `data check` on a 1M x 50 table.

    KERAS_BACKEND=jax PYTHONPATH=src .venv/bin/python bench/bench_data.py \\
        [--art-python /work/.venv-art/bin/python]

Detection: digits (scikit-learn), an MLP 64-128-64-10 trained 25 epochs (seed 0), a 2x2 trigger
(bottom-right corner, full intensity) planted in 5%, 10% and 33% of class 0 (poisons are images of
other classes relabelled 0). The poisoned set and the trained model are written to files; kerasguard
(JAX, this venv) and ART 1.20.1's SpectralSignatureDefense (eps_multiplier 1.5, expected_pp_poison
0.33: its defaults) and ActivationDefence (2 clusters, PCA 10, cluster_analysis "smaller" = its
default, and "silhouette-scores") on the TensorFlow backend (the ART venv, bench/requirements-art.txt)
read those same files. Attack success after filtering: the same architecture retrained (JAX, same
seed and epochs) without each method's flagged samples, measured on the test split's non-0 images
with the trigger. kerasguard's detector is also run on the TensorFlow and PyTorch backends (ART
venv) at 10%, with TrainingGuard's gradient-norm probe.

Table: a generated 1,000,000 x 50 float table (+ an integer label column) as CSV and Parquet;
`kerasguard data check` in a child process, wall time and peak RSS (ru_maxrss of the child), beside
pyarrow's bare `read_csv` / `read_table` of the same file in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from support.digitsets import TARGET, add_trigger, digits_split, plant, train_mlp  # noqa: E402  (the tests' builders)


def side(python: str, case: Path, which: str, backend: str) -> dict[str, Any]:
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": str(ROOT / "src"),
    }
    proc = subprocess.run(
        [python, str(ROOT / "bench" / "data_art_side.py"), str(case), which],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    raise RuntimeError(f"{which}/{backend} failed:\n{proc.stderr[-3000:]}")


def detection(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    from kerasguard.data import find_backdoor
    from kerasguard.data.retrain import accuracy

    x_train, x_test, y_train, y_test = digits_split()
    others = y_test != TARGET
    poisoned_test = (add_trigger(x_test[others]), np.full(int(others.sum()), TARGET))
    rows: list[dict[str, Any]] = []
    for share in args.rates:
        case = work / f"case{int(share * 100)}"
        case.mkdir(parents=True, exist_ok=True)
        xp, yp, poison = plant(x_train, y_train, share, args.seed)
        model = train_mlp(xp, yp, args.seed, args.epochs)
        model.save(case / "model.keras")
        np.savez(case / "train.npz", x=xp, y=yp)
        truth = set(poison.tolist())
        start = time.perf_counter()
        report = find_backdoor(
            model,
            xp,
            yp,
            retrain_filtered=True,
            epochs=args.epochs,
            seed=args.seed,
            test=(x_test, y_test),
            poisoned_test=poisoned_test,
        )
        seconds = time.perf_counter() - start
        kgd201 = [f.location.pointer for f in report.findings if f.rule_id == "KGD201"]
        methods = {
            "kerasguard_jax": {"flagged": list(report.flagged_indices), "seconds": seconds, "kgd201": kgd201}
        }
        methods.update(side(args.art_python, case, "art", "tensorflow"))
        if share == 0.10 and not args.skip_backends:
            for backend in ("tensorflow", "torch"):
                try:
                    methods.update(side(args.art_python, case, "kerasguard", backend))
                except RuntimeError as exc:
                    print(f"  kerasguard on {backend}: {exc}", file=sys.stderr)
        asr_before = accuracy(model, poisoned_test)
        acc_before = accuracy(model, (x_test, y_test))
        for name, result in methods.items():
            flagged = set(result["flagged"])
            hits = len(flagged & truth)
            row = {
                "share": share,
                "poisons": len(truth),
                "method": name,
                "flagged": len(flagged),
                "recall": hits / len(truth),
                "precision": hits / len(flagged) if flagged else 0.0,
                "seconds": round(result["seconds"], 2),
                "asr_before": asr_before,
                "acc_before": acc_before,
            }
            if "kgd201" in result:  # kerasguard's class verdict: which classes got the high finding
                row["kgd201"] = result["kgd201"]
            if name == "kerasguard_jax" and report.retrain is not None:
                row["asr_after"] = report.retrain.attack_success_after
                row["acc_after"] = report.retrain.clean_accuracy_after
            elif name.startswith("art_"):
                keep = np.ones(len(yp), dtype=bool)
                keep[sorted(flagged)] = False
                if keep.sum() >= 32:
                    retrained = train_mlp(xp[keep], yp[keep], args.seed, args.epochs)
                    row["asr_after"] = accuracy(retrained, poisoned_test)
                    row["acc_after"] = accuracy(retrained, (x_test, y_test))
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def table(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    n, d = args.table_rows, args.table_cols
    columns = {f"f{j}": rng.normal(size=n).astype(np.float64) for j in range(d)}
    columns["label"] = rng.integers(0, 10, n)
    tab = pa.table(columns)
    del columns
    csv_path, parquet_path = work / "table.csv", work / "table.parquet"
    pacsv.write_csv(tab, csv_path)
    pq.write_table(tab, parquet_path)
    del tab
    os.sync()  # else the first reader competes with the write-back of the 1.4 GB just written
    rows = []
    for round_ in range(args.table_rounds):  # interleaved rounds: a shared machine's noise hits both
        for path in (csv_path, parquet_path):
            reader = "csv as m; m.read_csv" if path.suffix == ".csv" else "parquet as m; m.read_table"
            code = f"import pyarrow.{reader}({str(path)!r})"
            for label, cmd in (
                (
                    "kerasguard data check",
                    [
                        sys.executable,
                        "-m",
                        "kerasguard",
                        "data",
                        "check",
                        str(path),
                        "--format",
                        "json",
                        "-o",
                        str(work / "report.json"),
                    ],
                ),
                ("pyarrow read only", [sys.executable, "-c", code]),
            ):
                start = time.perf_counter()
                with open(work / "child.log", "wb") as log:
                    proc = subprocess.Popen(
                        cmd,
                        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
                    proc.returncode = os.waitstatus_to_exitcode(status)
                seconds = time.perf_counter() - start
                row = {
                    "file": path.name,
                    "bytes": path.stat().st_size,
                    "what": label,
                    "round": round_,
                    "exit": proc.returncode,
                    "seconds": round(seconds, 2),
                    "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),  # less load-bound than wall
                    "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
                }
                if label.startswith("kerasguard"):
                    report = json.loads((work / "report.json").read_text())
                    row["findings"] = [f["rule_id"] for f in report["findings"]]
                rows.append(row)
                print(json.dumps(row), flush=True)
    summary = []
    for key in dict.fromkeys((r["file"], r["what"]) for r in rows):
        runs = [r for r in rows if (r["file"], r["what"]) == key]
        summary.append(
            {
                "file": key[0],
                "what": key[1],
                "median_seconds": float(np.median([r["seconds"] for r in runs])),
                "median_cpu_seconds": float(np.median([r["cpu_seconds"] for r in runs])),
                "max_peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            }
        )
        print("MEDIAN " + json.dumps(summary[-1]), flush=True)
    return rows + summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rates", type=lambda s: [float(v) for v in s.split(",")], default=[0.05, 0.10, 0.33]
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--art-python", default="/work/.venv-art/bin/python")
    parser.add_argument("--table-rows", type=int, default=1_000_000)
    parser.add_argument("--table-cols", type=int, default=50)
    parser.add_argument("--table-rounds", type=int, default=3)
    parser.add_argument("--skip-detection", action="store_true")
    parser.add_argument("--skip-table", action="store_true")
    parser.add_argument("--skip-backends", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        # the table runs first: its children's peak RSS must not be masked by the training runs
        results = {"table": [] if args.skip_table else table(args, work)}
        results["detection"] = [] if args.skip_detection else detection(args, work)
    print("JSON " + json.dumps(results))


if __name__ == "__main__":
    main()
