"""`make install` and `make deb` (README, "Install and run in production"):
the installed tree under a DESTDIR, the .deb's metadata and contents, the
unpacked package's binary, dpkg installing, upgrading, removing and
purging it in a scratch root, its maintainer scripts without systemd, and
the checks of Debian's own tools (lintian, systemd-analyze verify) where
they are installed.

The binary installed is the one under test (SLUICE_BIN, BIN= for make), so
`make check` does not build a release binary for this; the whole module
takes well under a minute (lintian is most of it)."""
import gzip
import os
import re
import shutil
import stat
import subprocess

import pytest

from conftest import ROOT, SLUICE

VERSION = re.search(r"^project\(sluice VERSION ([0-9.]+)",
                    open(os.path.join(ROOT, "CMakeLists.txt")).read(), re.M).group(1)


def make(*args, timeout=120):
    env = dict(os.environ)
    env.pop("MAKEFLAGS", None)  # not the outer make's -j / jobserver
    env.pop("MFLAGS", None)
    r = subprocess.run(["make", "-s", "-C", ROOT, "BIN=" + os.path.abspath(SLUICE), *args],
                       env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, "make %s:\n%s%s" % (" ".join(args), r.stdout, r.stderr)
    return r


def run(*args, **kw):
    kw.setdefault("timeout", 60)
    return subprocess.run(list(args), capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def usr(tmp_path_factory):
    """`make install DESTDIR=<tmp> PREFIX=/usr`, once for the module."""
    dest = tmp_path_factory.mktemp("destdir")
    make("install", "DESTDIR=%s" % dest, "PREFIX=/usr")
    return dest


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    """`make deb DEB_OUT=<tmp>`: the .deb's path."""
    for tool in ("dpkg-deb", "dpkg", "dpkg-query"):
        if not shutil.which(tool):
            pytest.skip("%s not installed (not a Debian system): no .deb" % tool)
    out = tmp_path_factory.mktemp("deb")
    r = make("deb", "DEB_OUT=%s" % out)
    path = r.stdout.strip().splitlines()[-1]
    assert path == str(out / ("sluice_%s_%s.deb" % (VERSION, arch()))), r.stdout
    return path


def arch():
    return run("dpkg", "--print-architecture").stdout.strip()


# ---- make install ----

def test_install_tree(usr):
    want = {
        "usr/bin/sluice": 0o755,
        "usr/lib/sluice/sluice_redis.so": 0o755,  # redis-server loads only executables
        "usr/share/man/man8/sluice.8.gz": 0o644,
        "usr/lib/systemd/system/sluice.service": 0o644,
        "etc/sluice/sluice.yaml": 0o644,
        "usr/share/doc/sluice/README.md": 0o644,
        "usr/share/doc/sluice/config.md": 0o644,
        "usr/share/doc/sluice/examples/quickstart.yaml": 0o644,
    }
    for rel, mode in want.items():
        p = usr / rel
        assert p.is_file(), rel
        assert stat.S_IMODE(p.stat().st_mode) == mode, (rel, oct(p.stat().st_mode))


def test_installed_binary_runs(usr):
    r = run(str(usr / "usr/bin/sluice"), "--version")
    assert r.returncode == 0 and r.stdout == "sluice %s\n" % VERSION
    r = run(str(usr / "usr/bin/sluice"), "--help")
    assert r.returncode == 0 and "serve -c FILE" in r.stdout


def test_installed_config_is_the_example_and_validates(usr):
    cfg = usr / "etc/sluice/sluice.yaml"
    assert cfg.read_bytes() == open(os.path.join(ROOT, "dist/sluice.yaml"), "rb").read()
    r = run(str(usr / "usr/bin/sluice"), "validate", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "%s: ok\n" % cfg
    # the snapshot goes to the unit's StateDirectory, the only writable place
    assert 'snapshot: "/var/lib/sluice/' in cfg.read_text()


def test_man_page_renders(usr):
    page = usr / "usr/share/man/man8/sluice.8.gz"
    with gzip.open(page, "rb") as f:
        src = f.read().decode()
    assert src == open(os.path.join(ROOT, "man/sluice.8")).read()
    assert '.TH SLUICE 8 ' in src and '"sluice %s"' % VERSION in src, \
        "man/sluice.8's .TH names another version than CMakeLists.txt"
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    if shutil.which("man"):
        r = run("man", "--warnings", "-l", str(page), env=env)
    elif shutil.which("groff"):
        r = subprocess.run("gzip -dc '%s' | groff -man -Tutf8 -ww" % page, shell=True,
                           capture_output=True, text=True, env=env, timeout=60)
    else:
        pytest.skip("neither man nor groff is installed: the page was not rendered")
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", "roff warnings:\n" + r.stderr
    text = re.sub(r".\x08", "", r.stdout)  # overstrike bold/underline
    for want in ("SLUICE(8)", "NAME", "sluice - API rate-limiting gateway", "SYNOPSIS",
                 "SIGHUP", "EXIT STATUS", "/etc/sluice/sluice.yaml", "systemctl reload sluice"):
        assert want in text, want


def test_unit_file(usr):
    unit = (usr / "usr/lib/systemd/system/sluice.service").read_text()
    assert not re.search(r"@[A-Z]+@", unit), "a template field was left unfilled"
    for line in (
        "ExecStartPre=/usr/bin/sluice validate -c /etc/sluice/sluice.yaml",
        "ExecStart=/usr/bin/sluice serve -c /etc/sluice/sluice.yaml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "DynamicUser=yes",
        "StateDirectory=sluice",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "LimitNOFILE=65536",
        "WantedBy=multi-user.target",
    ):
        assert re.search("^%s$" % re.escape(line), unit, re.M), line
    # no capability is granted to a service that binds ports >= 1024
    assert not re.search(r"^AmbientCapabilities=\S", unit, re.M)


def test_unit_verifies(usr, tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    # verify wants ExecStart's binary and the man page to exist: point them
    # at the DESTDIR tree
    unit = (usr / "usr/lib/systemd/system/sluice.service").read_text()
    unit = unit.replace("/usr/bin/sluice", str(usr / "usr/bin/sluice"))
    (tmp_path / "sluice.service").write_text(unit)
    r = run("systemd-analyze", "verify", str(tmp_path / "sluice.service"),
            env=dict(os.environ, MANPATH=str(usr / "usr/share/man")))
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr


def test_install_keeps_an_edited_config(tmp_path):
    make("install", "DESTDIR=%s" % tmp_path, "PREFIX=/usr")
    cfg = tmp_path / "etc/sluice/sluice.yaml"
    cfg.write_text(cfg.read_text() + "# edited\n")
    r = make("install", "DESTDIR=%s" % tmp_path, "PREFIX=/usr")
    assert "keeping" in r.stdout
    assert cfg.read_text().endswith("# edited\n")
    assert (tmp_path / "etc/sluice/sluice.yaml.default").read_bytes() == \
        open(os.path.join(ROOT, "dist/sluice.yaml"), "rb").read()


def test_install_under_usr_local(tmp_path):
    make("install", "DESTDIR=%s" % tmp_path, "PREFIX=/usr/local")
    assert (tmp_path / "usr/local/bin/sluice").is_file()
    assert (tmp_path / "usr/local/etc/sluice/sluice.yaml").is_file()
    assert (tmp_path / "usr/local/share/man/man8/sluice.8.gz").is_file()
    unit = (tmp_path / "usr/local/lib/systemd/system/sluice.service").read_text()
    assert "ExecStart=/usr/local/bin/sluice serve -c /usr/local/etc/sluice/sluice.yaml\n" in unit
    assert not (tmp_path / "etc").exists()


# ---- make deb ----

def test_deb_control(deb):
    r = run("dpkg-deb", "-I", deb)
    assert r.returncode == 0, r.stderr
    info = r.stdout
    assert re.search(r"^ Package: sluice$", info, re.M)
    assert re.search(r"^ Version: %s$" % re.escape(VERSION), info, re.M)
    assert re.search(r"^ Architecture: %s$" % arch(), info, re.M)
    assert re.search(r"^ Maintainer: .+ <.+@.+>$", info, re.M)
    assert re.search(r"^ Installed-Size: \d+$", info, re.M)
    depends = re.search(r"^ Depends: (.*)$", info, re.M).group(1)
    # the libraries the binary links, by their Debian package names
    for pkg in ("libc6", "libuv1", "libyaml-0-2", "libcjson1", "libhiredis", "libssl3",
                "libxxhash0"):
        assert pkg in depends, (pkg, depends)
    for script in ("postinst", "prerm", "postrm", "conffiles", "md5sums"):
        assert " %s" % script in info, script
    r = run("dpkg-deb", "-f", deb, "Description")
    assert r.stdout.startswith("API rate-limiting gateway")
    r = run("sh", "-c", "dpkg-deb --ctrl-tarfile '%s' | tar -xO ./conffiles" % deb)
    assert r.stdout == "/etc/sluice/sluice.yaml\n"


def test_deb_contents(deb):
    r = run("dpkg-deb", "-c", deb)
    assert r.returncode == 0, r.stderr
    rows = {}
    for line in r.stdout.splitlines():
        f = line.split()
        rows[f[-1]] = (f[0], f[1])
    for path in ("./usr/bin/sluice", "./lib/systemd/system/sluice.service",
                 "./usr/share/man/man8/sluice.8.gz", "./etc/sluice/sluice.yaml",
                 "./usr/share/doc/sluice/copyright", "./usr/share/doc/sluice/changelog.gz"):
        assert path in rows, path
    assert rows["./usr/bin/sluice"][0] == "-rwxr-xr-x"
    assert all(owner == "root/root" for _, owner in rows.values()), "files not owned by root"


def test_deb_unpacked_binary_runs(deb, tmp_path):
    assert run("dpkg", "-x", deb, str(tmp_path)).returncode == 0
    binary = tmp_path / "usr/bin/sluice"
    r = run(str(binary), "--version")
    assert r.returncode == 0 and r.stdout == "sluice %s\n" % VERSION
    r = run(str(binary), "validate", "-c", str(tmp_path / "etc/sluice/sluice.yaml"))
    assert r.returncode == 0, r.stderr
    if shutil.which("file"):
        assert "not stripped" not in run("file", str(binary)).stdout


def stub_systemd_tools(tmp_path):
    """deb-systemd-helper, deb-systemd-invoke and systemctl stand-ins that
    log their calls: (PATH, log file)."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    log = tmp_path / "calls"
    for name in ("deb-systemd-helper", "deb-systemd-invoke", "systemctl"):
        p = stubs / name
        p.write_text('#!/bin/sh\necho "%s $*" >> "%s"\n' % (name, log))
        p.chmod(0o755)
    return "%s:/usr/sbin:/usr/bin:/sbin:/bin" % stubs, log


def test_deb_dpkg_install_upgrade_remove_purge_in_a_root(deb, tmp_path):
    """dpkg itself installs the package into a scratch root (--root, with
    the maintainer scripts run outside a chroot and DPKG_ROOT set, and the
    systemd tools stubbed): files and conffile in place, postinst enables
    the unit without touching systemd, an edited conffile survives an
    upgrade, remove keeps it, purge deletes it and the state directory."""
    root = tmp_path / "root"
    for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates"):
        (root / d).mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text("")
    path, log = stub_systemd_tools(tmp_path)
    env = dict(os.environ, PATH=path)

    def dpkg(*args):
        # --force-depends: the scratch root's package database is empty;
        # the libraries themselves are the host's
        r = run("dpkg", "--root=%s" % root, "--force-script-chrootless", "--force-not-root",
                "--force-depends", "--force-confold", "--log=%s" % (tmp_path / "dpkg.log"),
                *args, env=env, timeout=120)
        assert r.returncode == 0, (args, r.stdout + r.stderr)
        calls = log.read_text() if log.exists() else ""
        if log.exists():
            log.unlink()
        return calls

    def status():
        r = run("dpkg-query", "--root=%s" % root, "-W", "-f=${Status}", "sluice")
        return r.stdout

    calls = dpkg("-i", deb)
    assert status() == "install ok installed"
    cfg = root / "etc/sluice/sluice.yaml"
    assert cfg.read_bytes() == open(os.path.join(ROOT, "dist/sluice.yaml"), "rb").read()
    r = run(str(root / "usr/bin/sluice"), "validate", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    assert (root / "lib/systemd/system/sluice.service").is_file()
    assert "deb-systemd-helper enable sluice.service" in calls, calls
    assert "systemctl" not in calls and "deb-systemd-invoke" not in calls, calls

    cfg.write_text(cfg.read_text() + "# local edit\n")
    dpkg("-i", deb)  # an upgrade (same version): the conffile keeps the edit
    assert status() == "install ok installed"
    assert cfg.read_text().endswith("# local edit\n")

    calls = dpkg("-r", "sluice")
    assert status() == "deinstall ok config-files"
    assert not (root / "usr/bin/sluice").exists()
    assert cfg.exists(), "remove must keep the conffile"
    assert "deb-systemd-helper mask sluice.service" in calls, calls

    (root / "var/lib/sluice").mkdir(parents=True)
    (root / "var/lib/sluice/sluice.snap").write_text("counters")
    calls = dpkg("--purge", "sluice")
    assert not cfg.exists() and not (root / "var/lib/sluice").exists()
    assert "deb-systemd-helper purge sluice.service" in calls, calls


def test_deb_depends_are_installed_packages(deb):
    """Every package in Depends is a real package, installed here (the
    binary runs on this machine)."""
    depends = run("dpkg-deb", "-f", deb, "Depends").stdout.strip()
    for item in depends.split(","):
        name = item.strip().split()[0]
        r = run("dpkg-query", "-W", "-f=${Status}", name)
        assert r.stdout == "install ok installed", (name, r.stdout + r.stderr)


def test_deb_maintainer_scripts_without_systemd(deb, tmp_path):
    """postinst/prerm/postrm with stand-ins for deb-systemd-helper,
    deb-systemd-invoke and systemctl that log their calls: systemctl and
    deb-systemd-invoke run only when systemd is (/run/systemd/system)."""
    ctrl = tmp_path / "ctrl"
    assert run("dpkg-deb", "-e", deb, str(ctrl)).returncode == 0
    path, log = stub_systemd_tools(tmp_path)
    env = dict(os.environ, PATH=path)
    env.pop("DPKG_ROOT", None)
    systemd_running = os.path.isdir("/run/systemd/system")
    for script, args in (("postinst", ["configure"]), ("postinst", ["configure", "0.0.9"]),
                         ("prerm", ["remove"]), ("postrm", ["remove"])):
        if log.exists():
            log.unlink()
        r = run("sh", "-e", str(ctrl / script), *args, env=env)
        assert r.returncode == 0, (script, args, r.stderr)
        calls = log.read_text() if log.exists() else ""
        ran_systemd = "systemctl" in calls or "deb-systemd-invoke" in calls
        assert ran_systemd == systemd_running, (script, args, calls)
        if script == "postinst":
            assert "deb-systemd-helper enable sluice.service" in calls, calls
    # (purge, which deletes the state directory, runs under DPKG_ROOT in
    # test_deb_dpkg_install_upgrade_remove_purge_in_a_root)


def test_deb_debian_checks(deb):
    """lintian (errors and warnings fail) and systemd-analyze verify, each
    skipped with a note by the script when not installed."""
    r = run(os.path.join(ROOT, "scripts/check-package.sh"), deb, timeout=180)
    print(r.stdout + r.stderr)
    assert r.returncode == 0, r.stdout + r.stderr
    for tool in ("lintian", "systemd-analyze verify"):
        assert ("check-package: %s: ok" % tool in r.stdout or
                "check-package: %s not installed: skipped" % tool.split()[0] in r.stdout)


def test_installed_module_loads_into_redis(usr):
    """The installed module is one redis-server loads and runs."""
    server = shutil.which("redis-server")
    if not server:
        pytest.skip("redis-server not installed")
    import socket
    import time

    import redis as redis_py

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--loadmodule",
                             str(usr / "usr/lib/sluice/sluice_redis.so")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        c = redis_py.Redis(port=port, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                c.ping()
                break
            except redis_py.RedisError:
                assert proc.poll() is None and time.monotonic() < deadline, "redis did not start"
                time.sleep(0.05)
        assert [m[b"name"] for m in c.module_list()] == [b"sluice"]
        # a call of another protocol is refused by name
        with pytest.raises(redis_py.ResponseError, match="SLUICEPROTO another protocol"):
            c.execute_command("SLUICE.CALL", "0", 1, "k", b"")
    finally:
        proc.kill()
        proc.wait(10)
