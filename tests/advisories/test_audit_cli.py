"""The audit and advisories commands as a user runs them: exit codes, formats, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from kerasguard.cli import app
from support.audit_fakes import SiteFactory

runner = CliRunner()


def flat(text: str) -> str:
    """Console output wrapped at the terminal width, as one line."""
    return " ".join(text.split())


def test_audit_exit_codes_and_formats(make_site: SiteFactory, tmp_path: Path) -> None:
    vulnerable = make_site({"keras": "3.13.2"})
    clean = make_site({"keras": "3.15.1"})
    assert runner.invoke(app, ["audit", "--site-packages", str(clean)]).exit_code == 0
    result = runner.invoke(app, ["audit", "--site-packages", str(vulnerable), "-f", "json"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["summary"]["vulnerabilities"] == 7
    out = tmp_path / "audit.sarif"
    result = runner.invoke(app, ["audit", "--site-packages", str(vulnerable), "-f", "sarif", "-o", str(out)])
    assert result.exit_code == 1 and json.loads(out.read_text())["version"] == "2.1.0"
    assert (
        runner.invoke(app, ["audit", "--site-packages", str(vulnerable), "--fail-on", "critical"]).exit_code
        == 0
    )
    bad = runner.invoke(app, ["audit", "--site-packages", str(vulnerable), "--fail-on", "dire"])
    assert bad.exit_code == 2 and "dire" in bad.stderr and "critical" in bad.stderr


def test_audit_errors_are_messages_not_tracebacks(tmp_path: Path) -> None:
    result = runner.invoke(app, ["audit", "--python", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "--python" in result.stderr and "no such file" in flat(result.stderr)
    assert "Traceback" not in result.output + result.stderr
    result = runner.invoke(app, ["audit", "-r", str(tmp_path / "missing.txt")])
    assert result.exit_code == 2 and "audit INCOMPLETE" in result.stdout


def test_policy_file_from_the_command_line(make_site: SiteFactory, tmp_path: Path) -> None:
    site = make_site({"keras": "3.15.0"})
    policy = tmp_path / "kerasguard.toml"
    policy.write_text('[[audit.ignore]]\nid = "KGSA-2026-0005"\nreason = "no assets extracted"\n')
    result = runner.invoke(app, ["audit", "--site-packages", str(site), "--policy", str(policy)])
    assert result.exit_code == 0 and "accepted by policy" in result.stdout


def test_advisories_list_show_update(tmp_path: Path) -> None:
    listed = runner.invoke(app, ["advisories", "list", "--package", "tf-keras", "-f", "json"])
    assert listed.exit_code == 0
    assert [a["id"] for a in json.loads(listed.stdout)] == ["KGSA-2026-0001"]
    text = runner.invoke(app, ["advisories", "list"])
    assert "CVE-2026-0897" in text.stdout and "*" in text.stdout
    shown = runner.invoke(app, ["advisories", "show", "GHSA-xfhx-r7ww-5995"])
    assert shown.exit_code == 0
    assert "correction: Not fixed in 3.13.1" in shown.stdout and "verified: 3.13.1 affected" in shown.stdout
    osv = json.loads(runner.invoke(app, ["advisories", "show", "CVE-2026-0897", "-f", "json"]).stdout)
    assert osv["id"] == "CVE-2026-0897" and osv["database_specific"]["corrections"]
    missing = runner.invoke(app, ["advisories", "show", "CVE-1900-1"])
    assert missing.exit_code == 2 and "no advisory" in missing.stderr
    feed = tmp_path / "feed.json"
    feed.write_text(
        json.dumps(
            [
                {
                    "id": "PYSEC-2027-77",
                    "modified": "2027-01-01T00:00:00Z",
                    "affected": [{"package": {"ecosystem": "PyPI", "name": "acme"}, "versions": ["1.0"]}],
                },
                {"id": "PYSEC-2027-78", "modified": "soon", "affected": []},
            ]
        )
    )
    update = runner.invoke(app, ["advisories", "update", "--from", str(feed)])
    assert update.exit_code == 1
    assert "1 accepted, 1 rejected" in update.stdout and "modified: invalid timestamp" in update.stdout
    assert "added: PYSEC-2027-77" in update.stdout
    gone = runner.invoke(app, ["advisories", "update", "--from", str(tmp_path / "nothing")])
    assert gone.exit_code == 2 and "no such file" in flat(gone.stderr)


def test_real_cli_process_on_the_running_environment(tmp_path: Path) -> None:
    env = {**os.environ, "KERASGUARD_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "kerasguard", "audit", "--python", sys.executable, "-f", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["complete"] and any(v["package"] == "h5py" for v in doc["vulnerabilities"])
    assert not any(v["package"] == "keras" for v in doc["vulnerabilities"])
