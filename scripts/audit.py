"""`make audit`: known vulnerabilities in what a lock file pins, never a pass that did not happen.

pip-audit asks an advisory service about each pinned release: PyPI (`/pypi/NAME/VERSION/json`,
the default) or OSV (api.osv.dev). Where neither can answer, pip-audit itself prints "No known
vulnerabilities found" and exits 0 (PyPI's 404 becomes a per-package "could not be audited"
note), so this script reads its JSON report instead and says which packages were audited.

Packages neither service answered for are looked up in PyPI's project JSON (`/pypi/NAME/json`),
whose `vulnerabilities` apply to the latest release only: a pin that is the latest release is
audited that way, any other pin is listed as not audited.

Exit status: 1 when a pinned release has a known vulnerability; 0 otherwise, with one line
`audit did NOT run for ...` naming what was not audited; AUDIT_REQUIRED=1 turns that line into
exit status 2 (for a place where the services can be reached).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

SERVICES = ("pypi", "osv")
PYPI_PROJECT_JSON = "https://pypi.org/pypi/{name}/json"


@dataclass
class Findings:
    pins: dict[str, str]
    audited: dict[str, str] = field(default_factory=dict)  # name -> who audited it
    vulnerable: list[str] = field(default_factory=list)  # one line each
    reasons: list[str] = field(default_factory=list)  # why a service could not answer

    def missing(self) -> list[str]:
        return sorted(set(self.pins) - set(self.audited))


def locked_pins(lock: Path) -> dict[str, str]:
    """Every `name==version` of a lock that applies to this interpreter (markers evaluated)."""
    pins = {}
    for number, line in enumerate(lock.read_text(encoding="utf-8").splitlines(), 1):
        if not line[:1].isalnum():
            continue
        requirement = Requirement(line.rstrip(" \\"))
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        specifiers = list(requirement.specifier)
        if len(specifiers) != 1 or specifiers[0].operator != "==":
            raise SystemExit(f"{lock}:{number}: not an exact pin: {line.strip()}")
        pins[canonicalize_name(requirement.name)] = specifiers[0].version
    return pins


def pip_audit(lock: Path, service: str, findings: Findings) -> None:
    """One pip-audit run; fills in what it audited, what it found and why it could not."""
    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "report.json"
        command = [
            *(sys.executable, "-m", "pip_audit", "--disable-pip", "--require-hashes"),
            *("-r", str(lock), "-s", service, "--format", "json", "-o", str(report_path)),
            *("--progress-spinner", "off", "--timeout", "15"),
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        if not report_path.exists() or not report_path.read_text():
            findings.reasons.append(f"{service}: {failure(done)}")
            return
        report = json.loads(report_path.read_text())
    skipped = []
    for dependency in report["dependencies"]:
        name = canonicalize_name(dependency["name"])
        if "skip_reason" in dependency:
            skipped.append(dependency["skip_reason"])
            continue
        findings.audited.setdefault(name, f"pip-audit ({service})")
        for vuln in dependency.get("vulns", []):
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed release"
            findings.vulnerable.append(
                f"{name} {dependency['version']}: {vuln['id']} (fixed in {fixed}; via {service})"
            )
    if skipped:
        findings.reasons.append(
            f"{service}: {len(skipped)} of {len(report['dependencies'])} skipped, as {skipped[0]!r}"
        )


def failure(done: subprocess.CompletedProcess[str]) -> str:
    """pip-audit's crash in a few words: the host it could not reach and why, when it says."""
    last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    host = re.search(r"host='([^']+)'", last)
    errno = re.search(r"\[Errno -?\d+\] [^)\"']+", last)
    if host and errno:
        return f"cannot reach {host.group(1)} ({errno.group(0)})"
    return last[:200]


def latest_release_advisories(name: str, version: str) -> list[str] | None:
    """The advisories PyPI lists for `name` when `version` is its latest release; None when it
    is not (or PyPI cannot be asked), so the pin stays unaudited."""
    request = urllib.request.Request(
        PYPI_PROJECT_JSON.format(name=name), headers={"Accept-Encoding": "gzip"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
            if response.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
        project = json.loads(body)
    except (OSError, ValueError):
        return None
    if project.get("info", {}).get("version") != version:
        return None
    return [
        f"{name} {version}: {vuln['id']} (fixed in {', '.join(vuln.get('fixed_in') or []) or 'no fixed release'}; via PyPI's project JSON)"
        for vuln in project.get("vulnerabilities") or []
        if not vuln.get("withdrawn")
    ]


def audit(lock: Path) -> Findings:
    findings = Findings(pins=locked_pins(lock))
    with ThreadPoolExecutor(max_workers=len(SERVICES)) as pool:
        list(pool.map(lambda service: pip_audit(lock, service, findings), SERVICES))
    missing = findings.missing()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = pool.map(lambda n: latest_release_advisories(n, findings.pins[n]), missing)
        for name, advisories in zip(missing, answers, strict=True):
            if advisories is not None:
                findings.audited[name] = "PyPI's project JSON (the pin is the latest release)"
                findings.vulnerable.extend(advisories)
    return findings


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: audit.py LOCK_FILE", file=sys.stderr)
        return 2
    lock = Path(argv[0])
    findings = audit(lock)
    total = len(findings.pins)
    for line in findings.vulnerable:
        print(f"audit: VULNERABLE {line}")
    if findings.vulnerable:
        print(f"audit FAILED: {len(findings.vulnerable)} known vulnerabilities in {lock}")
        return 1
    missing = findings.missing()
    if not missing:
        print(f"audit passed: no known vulnerability in the {total} packages {lock} pins")
        return 0
    audited_by = sorted(set(findings.audited.values()))
    print(
        f"audit did NOT run for {len(missing)} of the {total} packages {lock} pins "
        f"({', '.join(missing)}): pip-audit's advisory services did not answer "
        f"({'; '.join(sorted(findings.reasons))}); the other {len(findings.audited)} were audited "
        f"({', '.join(audited_by) or 'by nothing'}): no known vulnerability"
    )
    return 2 if os.environ.get("AUDIT_REQUIRED") == "1" else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
