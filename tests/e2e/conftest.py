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
    def __init__(self, config_text, tmpdir, ports, extra_args=(), wait=True, stdout=False):
        """stdout=True keeps the daemon's stdout (the access log) in
        self.stdout_path; else it is discarded."""
        self.ports = ports
        self.tmpdir = tmpdir
        self.config_path = os.path.join(tmpdir, "sluice.yaml")
        self.write_config(config_text)
        self.stderr_path = os.path.join(tmpdir, "stderr.log")
        self.stderr = open(self.stderr_path, "wb")
        self.stdout_path = os.path.join(tmpdir, "stdout.log") if stdout else None
        out = open(self.stdout_path, "wb") if stdout else subprocess.DEVNULL
        self.proc = subprocess.Popen([SLUICE, "serve", "-c", self.config_path, *extra_args],
                                     stdout=out, stderr=self.stderr, cwd=tmpdir)
        if stdout:
            out.close()  # the child has its own copy
        self.pid = self.proc.pid
        if wait:
            for name in ("gateway", "check", "admin"):
                if name in ports and ("{%s}" % name) in config_text:
                    if not wait_port(ports[name], proc=self.proc):
                        raise RuntimeError("sluice did not listen on %s:\n%s" % (name, self.log()))
            # A port that answers may be another process's (taken between
            # free_port() and the bind): only "serving" says every listener
            # is this daemon's. One that exits instead is reported (and the
            # fixture retries a port taken meanwhile).
            deadline = time.monotonic() + 15.0
            while "sluice: serving" not in self.log():
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("sluice did not start:\n%s" % self.log())
                time.sleep(0.01)

    def write_config(self, config_text):
        with open(self.config_path, "w") as f:
            f.write(config_text.format(**self.ports))

    def url(self, listener, path="/"):
        return "http://127.0.0.1:%d%s" % (self.ports[listener], path)

    def log(self):
        if not self.stderr.closed:
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


@pytest.fixture(autouse=True)
def not_at_the_hour_boundary():
    """Hourly and daily quotas reset on the hour (UTC), and 17 files count
    them exactly: a test is not started in the last 30 s of an hour, so it
    does not straddle the reset (at most one such wait per run)."""
    left = 3600 - time.time() % 3600
    if left < 30:
        time.sleep(left + 0.5)


@pytest.fixture
def sluice(request):
    """Factory: sluice(config_text, ports=None) -> Daemon (started)."""
    daemons = []
    tmp = tempfile.TemporaryDirectory(prefix="sluice-e2e-")

    def start(config_text, ports=None, **kw):
        # A port free_port() saw free can be taken (as a client's ephemeral
        # port) before the daemon binds it, and sluice then refuses to start
        # ("already in use"): pick fresh ports and try again, twice at most.
        # Ports the caller gave are kept, so a test of that refusal still
        # sees it.
        for attempt in range(3):
            p = {"gateway": free_port(), "check": free_port(), "admin": free_port(),
                 "upstream": free_port()}
            if ports:
                p.update(ports)
            try:
                d = Daemon(config_text, tmp.name, p, **kw)
            except RuntimeError as e:
                if "already in use" not in str(e) or attempt == 2:
                    raise
                continue
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


# ---- examples/ as harness configs (added for the seed and nginx tests) ----

EXAMPLES = os.path.join(ROOT, "examples")


def example_text(name, upstream=False, edit=None):
    """examples/<name> as a config for the `sluice` fixture: the proxy
    listener's address becomes {gateway}, the check listener's {check}, the
    admin listener's {admin}; with upstream=True an `upstream: static`
    becomes http://127.0.0.1:{upstream}. edit(text) may change the YAML
    first (say so in the test). Every other brace is escaped for format()."""
    import yaml

    with open(os.path.join(EXAMPLES, name)) as f:
        text = f.read()
    if edit is not None:
        text = edit(text)
    doc = yaml.safe_load(text)
    subst = {}
    for lst in doc.get("listeners") or []:
        ph = {"proxy": "gateway", "check": "check"}[lst["mode"]]
        if ph in subst.values():
            raise ValueError("%s: two %s listeners" % (name, lst["mode"]))
        subst[lst["listen"]] = ph
    admin = (doc.get("admin") or {}).get("listen")
    if admin:
        subst[admin] = "admin"
    text = text.replace("{", "{{").replace("}", "}}")
    for addr, ph in subst.items():
        host = addr.rsplit(":", 1)[0]
        text = text.replace('"%s"' % addr, '"%s:{%s}"' % (host, ph))
    if upstream:
        text = text.replace("upstream: static", 'upstream: "http://127.0.0.1:{upstream}"')
    return text


@pytest.fixture
def example():
    """example(name, upstream=False, edit=None) -> config text (see example_text)."""
    return example_text
