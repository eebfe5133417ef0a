"""scripts/install.sh with the system's commands replaced by stubs that log their calls: as root it installs
the missing Debian packages; as a user without sudo it skips them with a note and still installs the suite."""

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "install.sh"

STUBS = {
    "sudo": 'echo "sudo $*" >> "$LOG"; exit 1',  # a password would be needed
    "dpkg-query": 'echo -n "unknown ok not-installed"',
    "apt-get": 'echo "apt-get $*" >> "$LOG"',
    "python3": 'echo "python3 $*" >> "$LOG"; [ "$1" = -c ] && echo 0.1.0; exit 0',
}


def _run(tmp_path: Path, uid: int) -> tuple[subprocess.CompletedProcess, list[str]]:
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, body in {**STUBS, "id": f"echo {uid}"}.items():
        (stubs / name).write_text(f"#!/bin/bash\n{body}\n")
        (stubs / name).chmod(0o755)
    log = tmp_path / "calls.log"
    log.touch()
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "LOG": str(log), "HOME": str(tmp_path)}
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    return done, log.read_text().splitlines()


@pytest.mark.skipif(not Path("/bin/bash").exists(), reason="needs bash")
def test_as_root_the_missing_packages_are_installed(tmp_path):
    done, calls = _run(tmp_path, uid=0)
    assert done.returncode == 0, done.stderr
    install = [c for c in calls if c.startswith("apt-get") and " install " in c]
    assert len(install) == 1 and all(p in install[0] for p in ("dataset-fashion-mnist", "slurm-wlm", "munge"))
    assert any(c.startswith("python3 -m pip install -q -e .[dev]") for c in calls)


@pytest.mark.skipif(not Path("/bin/bash").exists(), reason="needs bash")
def test_without_root_the_system_packages_are_skipped_with_a_note_and_the_suite_installed(tmp_path):
    done, calls = _run(tmp_path, uid=1000)
    assert done.returncode == 0, done.stderr
    assert not any(c.startswith("apt-get") for c in calls)
    assert "not root and no password-less sudo" in done.stderr
    for package, consequence in (("dataset-fashion-mnist", "CPU-scale data"), ("slurm-wlm", "Slurm tests"),
                                 ("munge", "Slurm")):
        assert any(package in line and consequence in line for line in done.stderr.splitlines()), package
    assert any(c.startswith("python3 -m pip install -q -e .[dev]") for c in calls)
    assert "mpdit-bench installed: 0.1.0" in done.stdout
