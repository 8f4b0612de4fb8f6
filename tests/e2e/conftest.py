"""Shared harness for end-to-end tests: start the real sluice binary on
loopback ports with a real config, wait until it listens, stop it by PID.

    def test_x(sluice):
        d = sluice(CONFIG)          # CONFIG may use {gateway} {check} {admin} {upstream}
        requests.get(d.url("gateway", "/x"))

Ports are picked free on 127.0.0.1 per daemon. Every daemon is stopped
(SIGTERM, then SIGKILL after 10 s) when the test ends, and its stderr is
printed on failure."""
import os
import signal
import socket
import subprocess
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SLUICE = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "build", "sluice"))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=15.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


class Daemon:
    def __init__(self, config_text, tmpdir, ports, extra_args=(), wait=True):
        self.ports = ports
        self.tmpdir = tmpdir
        self.config_path = os.path.join(tmpdir, "sluice.yaml")
        self.write_config(config_text)
        self.stderr_path = os.path.join(tmpdir, "stderr.log")
        self.stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([SLUICE, "serve", "-c", self.config_path, *extra_args],
                                     stdout=subprocess.DEVNULL, stderr=self.stderr, cwd=tmpdir)
        self.pid = self.proc.pid
        if wait:
            for name in ("gateway", "check", "admin"):
                if name in ports and ("{%s}" % name) in config_text:
                    if not wait_port(ports[name], proc=self.proc):
                        raise RuntimeError("sluice did not listen on %s:\n%s" % (name, self.log()))

    def write_config(self, config_text):
        with open(self.config_path, "w") as f:
            f.write(config_text.format(**self.ports))

    def url(self, listener, path="/"):
        return "http://127.0.0.1:%d%s" % (self.ports[listener], path)

    def log(self):
        self.stderr.flush()
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def signal(self, sig):
        os.kill(self.pid, sig)

    def stop(self, timeout=10.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.stderr.close()
        return self.proc.returncode


@pytest.fixture
def sluice(request):
    """Factory: sluice(config_text, ports=None) -> Daemon (started)."""
    daemons = []
    tmp = tempfile.TemporaryDirectory(prefix="sluice-e2e-")

    def start(config_text, ports=None, **kw):
        p = {"gateway": free_port(), "check": free_port(), "admin": free_port(),
             "upstream": free_port()}
        if ports:
            p.update(ports)
        d = Daemon(config_text, tmp.name, p, **kw)
        daemons.append(d)
        return d

    yield start
    failed = request.node.rep_call.failed if hasattr(request.node, "rep_call") else False
    for d in daemons:
        d.stop()
        if failed:
            print("---- sluice stderr ----\n" + d.log())
    tmp.cleanup()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
