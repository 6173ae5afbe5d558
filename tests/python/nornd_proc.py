"""Helpers for the Python foreign-client tests: generated stubs and a nornd process.

Environment (set by ctest, see tests/tests.cmake):
  NORND           path of the nornd binary (required)
  NORN_PROTO_DIR  the repository's proto/ directory (default: ../../proto from here)
  NORN_PY_GEN     a directory the generated stubs may be written to
                  (default: $TMPDIR/norn-pygen)
  NORN_TEST_KEEP  when set, scratch directories (data, nornd.log) are kept

Stubs are generated once per distinct set of .proto inputs into
$NORN_PY_GEN/stubs-<hash>; an flock plus an atomic rename keep parallel test
processes (ctest -j) from racing or seeing a half-written directory.

Run the tests with Debian's interpreter, /usr/bin/python3: it is the one that
sees python3-grpcio and python3-grpc-tools.
"""

import fcntl
import glob
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.environ.get("NORN_PROTO_DIR") or os.path.normpath(
    os.path.join(HERE, "..", "..", "proto"))
GEN_ROOT = os.environ.get("NORN_PY_GEN") or os.path.join(
    tempfile.gettempdir(), "norn-pygen")

# Include paths for the well-known types and the gRPC service protos.
SYSTEM_INCLUDES = ["/usr/include", "/usr/share/grpc-proto"]
# python3-grpcio ships neither the health nor the reflection messages.
SYSTEM_PROTOS = [
    "grpc/health/v1/health.proto",
    "grpc/reflection/v1alpha/reflection.proto",
    "grpc/reflection/v1/reflection.proto",
]

NORN_SERVICES = [
    "norn.v1.SessionService",
    "norn.v1.AgentService",
    "norn.v1.SwarmService",
    "norn.v1.AuditService",
    "norn.v1.ConfigService",
    "norn.v1.StatsService",
]

START_TIMEOUT_S = 10.0

_stub_dir = None


def _find_system_proto(rel):
    for inc in SYSTEM_INCLUDES:
        p = os.path.join(inc, rel)
        if os.path.isfile(p):
            return p
    raise FileNotFoundError("%s not found under %s (install grpc-proto / libprotobuf-dev)"
                            % (rel, SYSTEM_INCLUDES))


def _norn_protos():
    files = sorted(glob.glob(os.path.join(PROTO_DIR, "norn", "v1", "*.proto")))
    if not files:
        raise FileNotFoundError("no norn/v1/*.proto under %s (NORN_PROTO_DIR)" % PROTO_DIR)
    return files


def ensure_stubs():
    """Generate the stubs (once) and make them importable; returns their directory."""
    global _stub_dir
    if _stub_dir:
        return _stub_dir
    norn = _norn_protos()
    system = [_find_system_proto(rel) for rel in SYSTEM_PROTOS]
    h = hashlib.sha256()
    for path in norn + system:
        h.update(path.encode() + b"\0")
        with open(path, "rb") as f:
            h.update(f.read())
        h.update(b"\0")
    final = os.path.join(GEN_ROOT, "stubs-" + h.hexdigest()[:16])

    if not os.path.isdir(final):
        os.makedirs(GEN_ROOT, exist_ok=True)
        with open(os.path.join(GEN_ROOT, ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not os.path.isdir(final):
                tmp = tempfile.mkdtemp(prefix=".tmp-stubs-", dir=GEN_ROOT)
                try:
                    cmd = [sys.executable, "-m", "grpc_tools.protoc", "-I" + PROTO_DIR]
                    cmd += ["-I" + inc for inc in SYSTEM_INCLUDES]
                    cmd += ["--python_out=" + tmp, "--grpc_python_out=" + tmp]
                    cmd += norn + SYSTEM_PROTOS
                    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       timeout=120)
                    if r.returncode != 0:
                        raise RuntimeError("stub generation failed (%d): %s\n%s"
                                           % (r.returncode, " ".join(cmd),
                                              r.stdout.decode(errors="replace")))
                    os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
                    os.rename(tmp, final)  # atomic: readers see all or nothing
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise

    if final not in sys.path:
        sys.path.insert(0, final)
    # The generated grpc/health/v1 and grpc/reflection/v1* modules live in the
    # `grpc` package namespace, which belongs to the installed grpcio: extend
    # that package's search path instead of shadowing it.
    import grpc  # noqa: E402
    extra = os.path.join(final, "grpc")
    if extra not in grpc.__path__:
        grpc.__path__.append(extra)
    _stub_dir = final
    return final


class Nornd:
    """One nornd process with its own scratch directory.

    Always call close() (e.g. via addCleanup): it closes the channels handed
    out, kills the process if it is still running and removes the directory.
    """

    def __init__(self, args=(), env=None):
        self.binary = os.environ.get("NORND")
        if not self.binary:
            raise RuntimeError("NORND is not set (path of the nornd binary)")
        self.extra_args = list(args)
        self.extra_env = dict(env or {})
        self.dir = None
        self.proc = None
        self.port = None
        self.returncode = None
        self._channels = []
        self._log = None

    @property
    def target(self):
        return "127.0.0.1:%d" % self.port

    @property
    def log_path(self):
        return os.path.join(self.dir, "nornd.log")

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except (OSError, TypeError):
            return ""

    @property
    def data_dir(self):
        """nornd's --data-dir (the RocksDB store is data_dir/db)."""
        return os.path.join(self.dir, "data") if self.dir else None

    def prepare(self):
        """Creates the scratch directory without starting nornd (so a test can
        seed the data directory first); start() calls it when needed."""
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="norn-py-")
        return self

    def start(self):
        """Starts nornd. The scratch directory (and so the data directory) is
        kept across start()s: after kill() or terminate(), start() again (or
        restart()) runs a new process on the same data."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("nornd is already running (pid %d)" % self.proc.pid)
        self.prepare()
        port_file = os.path.join(self.dir, "port")
        try:
            os.unlink(port_file)  # left by an earlier run: never read a stale port
        except FileNotFoundError:
            pass
        self.port = None
        self.returncode = None
        argv = [self.binary, "--listen", "127.0.0.1:0",
                "--data-dir", self.data_dir,
                "--port-file", port_file] + self.extra_args
        # Our environment minus NORN_* (ctest sets some; nornd reads NORN_*
        # as configuration) and AWS_* (real credentials must never reach a
        # test server), plus what the test asks for.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("NORN_") and not k.startswith("AWS_")}
        env.update(self.extra_env)
        if self._log is not None:
            self._log.close()
        self._log = open(self.log_path, "ab")  # a restart appends to the same log
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                with open(port_file) as f:
                    text = f.read().strip()
                if text.isdigit() and int(text) > 0:
                    self.port = int(text)
                    return self
            except FileNotFoundError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("nornd exited with %d before listening; log:\n%s"
                                   % (self.proc.returncode, self.log_text()))
            time.sleep(0.01)
        raise RuntimeError("nornd wrote no port file within %.0f s; log:\n%s"
                           % (START_TIMEOUT_S, self.log_text()))

    def channel(self, options=None):
        """A channel to the running process, closed by close()/restart();
        options are grpc channel options (e.g. a larger receive limit)."""
        import grpc
        ch = grpc.insecure_channel(self.target, options=options)
        self._channels.append(ch)
        return ch

    def send_signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def wait(self, timeout=20.0):
        """Waits for the exit; returns the exit status (negative: killed by that signal)."""
        self.returncode = self.proc.wait(timeout=timeout)
        return self.returncode

    def terminate(self, timeout=20.0):
        """SIGTERM, then wait: returns the exit status."""
        self.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self, timeout=20.0):
        """SIGKILL (a crash: no drain, no flush), then wait: returns the exit status."""
        self.send_signal(signal.SIGKILL)
        return self.wait(timeout)

    def close_channels(self):
        """Closes the channels handed out so far (they point at the old port
        once the process is restarted)."""
        for ch in self._channels:
            try:
                ch.close()
            except Exception:
                pass
        self._channels = []

    def restart(self, sig=signal.SIGKILL, timeout=20.0):
        """Stops the running process with `sig` (unless it already exited),
        closes the old channels and starts a new process on the same data
        directory; returns self (with the new port)."""
        if self.proc is not None and self.proc.poll() is None:
            self.send_signal(sig)
            self.wait(timeout)
        self.close_channels()
        return self.start()

    def close(self):
        self.close_channels()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.dir:
            if os.environ.get("NORN_TEST_KEEP"):
                sys.stderr.write("nornd scratch directory kept: %s\n" % self.dir)
            else:
                shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def start_nornd(testcase, args=(), env=None, before_start=None):
    """Starts nornd and registers its cleanup on `testcase` (a TestCase or its class).

    before_start, when given, is called with the Nornd after its scratch
    directory exists and before the process starts (e.g. to seed n.data_dir).
    """
    n = Nornd(args=args, env=env)
    if isinstance(testcase, type):
        testcase.addClassCleanup(n.close)
    else:
        testcase.addCleanup(n.close)
    if before_start is not None:
        before_start(n.prepare())
    n.start()
    return n
