"""ainbox_harness: real processes for end-to-end tests.

Starts our binaries (`ainbox run|broker|edge|actor`, `ainbox-admin`) and
private Redis and PostgreSQL instances in a temporary directory, on ports
chosen here, waits for readiness instead of sleeping, and tears everything
down when a test ends, passed or failed. Every process writes its log to the
scratch directory; at the end the logs are scanned for sanitizer reports and
unexpected ERROR lines, which fail the test (as nginx-tests do).

Binaries come from the environment (set by ctest): AINBOX_BIN, AINBOX_ADMIN.
Every wait is bounded in time; nothing here sleeps without a deadline.
"""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MIGRATIONS = os.path.join(ROOT, "deploy", "migrations")

PGBIN = "/usr/lib/postgresql/15/bin"
SANITIZER_MARKS = ("AddressSanitizer", "UndefinedBehaviorSanitizer", "runtime error:",
                   "ThreadSanitizer", "LeakSanitizer")
# A process that ended by one of these crashed, whatever its log says.
CRASH_SIGNALS = (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGFPE, signal.SIGILL)


def wait_until(check, timeout, what, interval=0.02):
    """Calls check() until it returns a true value; fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # the thing waited for is not up yet
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                         + (f" (last error: {last_error})" if last_error else ""))


# Ports are drawn below the kernel's ephemeral range (32768-60999 here):
# a port the kernel picks for bind(0) is also one it hands to outgoing
# connections, and under a parallel run another test's client took a
# broker's bus port between the check and the bind ("Address already in
# use"). Below the range only another test's listener can collide, and
# each one checks before it binds.
_PORTS = range(10000, 32700)


def _bindable(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port():
    """A TCP port free right now on 127.0.0.1, outside the ephemeral range."""
    return free_ports(1)[0]


def free_ports(n):
    """n distinct free ports, each with port+1 and port+2 free too (the
    broker's bus endpoints sit next to its router port)."""
    ports = []
    while len(ports) < n:
        p = random.randrange(_PORTS.start, _PORTS.stop)
        if any(abs(p - q) < 3 for q in ports):
            continue
        if all(_bindable(q) for q in (p, p + 1, p + 2)):
            ports.append(p)
    return ports


def base_env(broker_port, http_port=None, **extra):
    """Environment for our processes: a broker on 127.0.0.1:broker_port
    (bus on +1/+2), fast heartbeats, test-friendly defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AINBOX_")}
    env.update({
        "AINBOX_BROKER": f"tcp://127.0.0.1:{broker_port}",
        "AINBOX_BROKER_BIND": f"tcp://127.0.0.1:{broker_port}",
        "AINBOX_HEARTBEAT_MS": "200",
        "AINBOX_METRICS_INTERVAL_MS": "300",
        "AINBOX_SHUTDOWN_TIMEOUT_MS": "3000",
        "AINBOX_HTTP_ADDR": "127.0.0.1",
        "HTTP_PORT": str(http_port or free_port()),
        "NODE_ENV": "test",
        "LOG_LEVEL": "info",
        # The edge's default, 4,096 civetweb threads, would put ~4,100 threads per edge
        # on a machine whose test runs share one pid budget; tests need few.
        "AINBOX_EDGE_CONNECTIONS": "256",
    })
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Proc:
    """A child process with its log file; stopped for sure at teardown."""

    def __init__(self, name, argv, env, scratch, allow_errors=()):
        self.name = name
        self.log_path = os.path.join(scratch, f"{name}.log")
        self.allow_errors = allow_errors
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def signal(self, signo):
        if self.alive():
            os.kill(self.popen.pid, signo)

    def stop(self, timeout=10):
        """SIGTERM, then SIGKILL after `timeout`. Returns the exit status."""
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()
        return self.popen.returncode

    def kill9(self):
        self.signal(signal.SIGKILL)
        self.popen.wait(5)

    def log(self):
        with open(self.log_path, "r", errors="replace") as f:
            return f.read()


class Redis:
    """A private redis-server on a unix socket and a free TCP port."""

    def __init__(self, scratch, procs):
        self.dir = os.path.join(scratch, "redis")
        os.makedirs(self.dir)
        self.port = free_port()
        self.socket = os.path.join(self.dir, "redis.sock")
        self.procs = procs
        self.proc = None
        self.start()

    def start(self):
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--unixsocket", self.socket, "--unixsocketperm", "700", "--save", "",
                "--appendonly", "no", "--dir", self.dir]
        self.proc = Proc(f"redis-{len(self.procs)}", argv, os.environ.copy(), self.dir)
        self.procs.append(self.proc)
        wait_until(self.ping, 10, "redis to answer PING")

    def ping(self):
        out = subprocess.run(["redis-cli", "-s", self.socket, "ping"], capture_output=True,
                             timeout=5)
        return out.stdout.strip() == b"PONG"

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def stop(self):
        self.proc.stop()


class Postgres:
    """A private PostgreSQL 15 cluster, run as the postgres user (initdb
    refuses root), on a free port and a socket in its own directory."""

    def __init__(self, scratch, dbname="ainbox_test"):
        if os.geteuid() != 0:
            raise unittest.SkipTest("PostgreSQL tests run as root (runuser -u postgres)")
        self.dir = tempfile.mkdtemp(prefix="ainbox-pg-")
        os.chmod(self.dir, 0o755)
        shutil.chown(self.dir, "postgres", "postgres")
        self.port = free_port()
        self.dbname = dbname
        self.data = os.path.join(self.dir, "data")
        self._pg(["initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync", "--no-instructions"])
        self.opts = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                     "-c synchronous_commit=off -c full_page_writes=off")
        self.server_start()
        self.started = True
        self.psql(f"create database {dbname}", db="postgres")

    def server_start(self):
        """Starts the server on its port and data (again, after server_stop);
        returns once it accepts connections (pg_ctl -w, at most 60 s)."""
        self._pg(["pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "server.log"), "-w",
                  "-t", "60", "-s", "-o", self.opts, "start"])

    def server_stop(self, mode="fast"):
        """Stops the server, keeping its data (a fault, not the teardown):
        "fast" ends sessions at once, "immediate" is a crash."""
        self._pg(["pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "-s", "stop"])

    def postmaster_pid(self):
        """The postmaster's pid (postmaster.pid's first line), or None when stopped."""
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError):
            return None

    def _pg(self, argv):
        subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(PGBIN, argv[0])]
                       + argv[1:], check=True, capture_output=True, timeout=90)

    @property
    def url(self):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.dbname}"

    def psql(self, sql, db=None):
        """Runs sql; returns stdout rows as lists of strings."""
        out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                              f"host=127.0.0.1 port={self.port} user=postgres "
                              f"dbname={db or self.dbname}", "-c", sql],
                             capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise AssertionError(f"psql failed: {out.stderr}")
        return [line.split("|") for line in out.stdout.splitlines() if line]

    def stop(self):
        if getattr(self, "started", False):
            try:
                self._pg(["pg_ctl", "-D", self.data, "-m", "immediate", "-w", "-s", "stop"])
            except subprocess.SubprocessError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


class AinboxTestCase(unittest.TestCase):
    """Base class: a scratch directory, process bookkeeping and teardown.

    Subclasses start what they need with the helpers below; whatever was
    started is stopped in tearDown, and the logs are scanned.
    """

    # ERROR lines a test provokes on purpose can be allowed per test.
    allowed_errors = ()

    def setUp(self):
        self.bin = os.environ.get("AINBOX_BIN", "ainbox")
        self.admin_bin = os.environ.get("AINBOX_ADMIN", "ainbox-admin")
        self.scratch = tempfile.mkdtemp(prefix="ainbox-test-")
        os.chmod(self.scratch, 0o755)
        self.procs = []
        self.services = []
        self.addCleanup(self._teardown)

    def _teardown(self):
        problems = []
        for p in reversed(self.procs):
            p.stop()
        for s in reversed(self.services):
            s.stop()
        for p in self.procs:
            problems += self._scan(p)
        if problems:
            # Keep the evidence for a failing test.
            print(f"\nlogs kept in {self.scratch}")
            self.fail("problems in process logs:\n" + "\n".join(problems[:20]))
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _scan(self, proc):
        found = []
        if proc.popen.returncode is not None and -proc.popen.returncode in CRASH_SIGNALS:
            found.append(f"{proc.name}: died of signal {-proc.popen.returncode} "
                         f"({signal.Signals(-proc.popen.returncode).name})")
        for line in proc.log().splitlines():
            if any(mark in line for mark in SANITIZER_MARKS):
                found.append(f"{proc.name}: {line}")
            elif " ERROR " in line and not any(a in line for a in
                                                self.allowed_errors + tuple(proc.allow_errors)):
                found.append(f"{proc.name}: {line}")
        return found

    # ------------------------------------------------------------- services

    def start_redis(self):
        r = Redis(self.scratch, self.procs)
        return r

    def start_postgres(self):
        pg = Postgres(self.scratch)
        self.services.append(pg)
        return pg

    def start_migrated_postgres(self):
        """A private PostgreSQL with the repository's schema applied by
        `ainbox migrate`."""
        pg = self.start_postgres()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AINBOX_")}
        env.update({"DATABASE_URL": pg.url, "AINBOX_MIGRATIONS_DIR": MIGRATIONS})
        out = subprocess.run([self.bin, "migrate"], env=env, capture_output=True, text=True,
                             timeout=60)
        if out.returncode != 0:
            raise AssertionError(f"ainbox migrate failed: {out.stderr}")
        return pg

    # ------------------------------------------------------------- ainbox

    def base_env(self, broker_port, http_port=None, **extra):
        return base_env(broker_port, http_port, **extra)

    def spawn(self, name, args, env, allow_errors=()):
        p = Proc(name, [self.bin] + args, env, self.scratch, allow_errors)
        self.procs.append(p)
        return p

    def admin(self, env, *args, timeout=10, check=True):
        """Runs ainbox-admin; returns parsed JSON for --json calls, else
        the CompletedProcess."""
        out = subprocess.run([self.admin_bin, "--broker", env["AINBOX_BROKER"]] + list(args),
                             capture_output=True, text=True, timeout=timeout)
        if check and out.returncode != 0:
            raise AssertionError(f"ainbox-admin {args} failed ({out.returncode}): "
                                 f"{out.stdout}{out.stderr}")
        if "--json" in args and out.returncode == 0:
            return json.loads(out.stdout)
        return out

    def wait_services(self, env, names, timeout=15):
        """Waits until the broker lists every service in `names` with a
        worker."""
        def ready():
            data = self.admin(env, "--json", "services", check=False)
            if not isinstance(data, dict):
                return False
            have = {s["name"]: s["workers"] for s in data.get("services", [])}
            return all(have.get(n, 0) > 0 for n in names)
        wait_until(ready, timeout, f"services {names} to register")

    def http(self, env, path, method="GET", headers=None, timeout=5):
        """(status, headers, body) of one request to the edge in `env`."""
        url = f"http://127.0.0.1:{env['HTTP_PORT']}{path}"
        req = urllib.request.Request(url, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as res:
                return res.status, dict(res.headers), res.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def http_json(self, env, path, **kw):
        status, headers, body = self.http(env, path, **kw)
        return status, json.loads(body)

    def wait_health(self, env, timeout=20):
        def healthy():
            status, _body = self.http_json(env, "/health", timeout=2)
            return status == 200
        wait_until(healthy, timeout, "GET /health to answer 200")
