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


def test_short_help_is_the_same_help():
    long_, short = run("--help"), run("-h")
    assert short.returncode == 0 and short.stdout == long_.stdout and short.stderr == ""


def test_short_version():
    r = run("-V")
    assert r.returncode == 0 and r.stdout == run("--version").stdout


def test_help_per_command_on_stdout():
    for cmd in ("serve", "validate"):
        for flag in ("-h", "--help"):
            r = run(cmd, flag)
            assert r.returncode == 0, (cmd, flag, r.stderr)
            assert r.stdout.startswith("usage: sluice %s -c FILE" % cmd)
            assert "-c, --config FILE" in r.stdout
            assert r.stderr == ""
        assert run("help", cmd).stdout == run(cmd, "--help").stdout


def test_help_after_other_options_still_helps():
    r = run("validate", "-c", "nonexistent.yaml", "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: sluice validate")


def test_unknown_option_is_usage_error_on_stderr():
    for args in (("--bogus",), ("serve", "--bogus"), ("validate", "-x"),
                 ("serve", "-c"), ("validate",), ("serve", "extra")):
        r = run(*args)
        assert r.returncode == 2, args
        assert r.stdout == "", args
        assert "usage: sluice" in r.stderr, args
    assert "unknown option '--bogus'" in run("serve", "--bogus").stderr
    assert "needs a FILE" in run("serve", "-c").stderr


def test_unknown_command_names_it():
    r = run("frobnicate")
    assert r.returncode == 2 and "unknown command 'frobnicate'" in r.stderr


def test_config_equals_form(tmp_path):
    cfg = os.path.join(os.path.dirname(__file__), "../../examples/quickstart.yaml")
    r = run("validate", "--config=" + cfg)
    assert r.returncode == 0 and r.stdout.endswith(": ok\n")
