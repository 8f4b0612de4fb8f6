"""The command line of DESIGN.md section 1: --version, --help, bad usage."""
import os
import subprocess

SLUICE = os.environ.get("SLUICE_BIN", os.path.join(os.path.dirname(__file__), "../../build/sluice"))


def run(*args):
    return subprocess.run([SLUICE, *args], capture_output=True, text=True, timeout=20)


def test_version_prints_name_and_version():
    r = run("--version")
    assert r.returncode == 0
    assert r.stdout.startswith("sluice ")


def test_help_lists_commands():
    r = run("--help")
    assert r.returncode == 0
    assert "serve -c FILE" in r.stdout and "validate -c FILE" in r.stdout


def test_no_command_is_usage_error():
    r = run()
    assert r.returncode == 2
    assert "usage:" in r.stderr
