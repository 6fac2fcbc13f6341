"""Shared plumbing of the service benchmarks (load_bench, soak, backfill_bench): `tagger serve` as a child
process, a fresh PostgreSQL schema, resident memory read from /proc, percentiles, the corpus texts.

Only 127.0.0.1 is ever contacted: proxy variables are removed from every child's environment and every
httpx client here has `trust_env=False`.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def ms(value: float | None) -> str:
    return "   n/a" if value is None else f"{value * 1000:7.1f} ms"


def machine() -> str:
    """`nproc`, CPU model and memory, for the record next to every figure."""
    model = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1])
        mem = f"{kib / 1024 / 1024:.0f} GiB"
    return (f"nproc {len(os.sched_getaffinity(0))}, CPU {model}, RAM {mem}, Python {platform.python_version()}, "
            f"{load_average()}")


def load_average() -> str:
    """The 1/5/15-minute load averages (other work on the machine skews every figure)."""
    try:
        return "load average " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "load average ?"


# -- memory --------------------------------------------------------------------------------------------------
def _status_kib(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def rss_mib(pid: int) -> float | None:
    """Resident memory of one process now (VmRSS), MiB."""
    kib = _status_kib(pid, "VmRSS")
    return None if kib is None else kib / 1024


def hwm_mib(pid: int) -> float | None:
    """Peak resident memory of one process so far (VmHWM, kept by the kernel), MiB."""
    kib = _status_kib(pid, "VmHWM")
    return None if kib is None else kib / 1024


def descendants(pid: int) -> list[int]:
    """pid and every process below it (from /proc/*/stat parent ids)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


class TreeMemory:
    """Samples a process tree every `interval` s: the peak of the summed RSS of all its processes (shared
    pages are counted once per process, so this is an upper bound), the peak of the root alone (VmHWM),
    and the peak of any single process."""

    def __init__(self, pid: int, interval: float = 0.25):
        self.pid, self.interval = pid, interval
        self.peak_tree = self.peak_root = self.peak_single = 0.0
        self.max_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = descendants(self.pid)
            sizes = [s for s in (rss_mib(p) for p in pids) if s is not None]
            if sizes:
                self.peak_tree = max(self.peak_tree, sum(sizes))
                self.peak_single = max(self.peak_single, max(sizes))
                self.max_processes = max(self.max_processes, len(sizes))
            root = hwm_mib(self.pid)
            if root is not None:
                self.peak_root = max(self.peak_root, root)
            self._stop.wait(self.interval)


# -- child processes -----------------------------------------------------------------------------------------
def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without proxy variables, with the repository (and benchmarks/) importable."""
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS and not k.startswith("TAGGER_")}
    env.update({"NO_PROXY": "127.0.0.1,localhost",
                "PYTHONPATH": os.pathsep.join(p for p in (str(HERE), str(ROOT), os.environ.get("PYTHONPATH")) if p)})
    env.update(extra or {})
    return env


def tagger_command() -> list[str]:
    """The installed `tagger` script beside this Python, else `python -m tagger.cli`."""
    script = Path(sys.executable).with_name("tagger")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "tagger.cli"]


class Serve:
    """`tagger serve` as a child process on 127.0.0.1 and a free port; its log goes to `log_path`."""

    def __init__(self, db_url: str, log_path: Path, *, env: Mapping[str, str] | None = None,
                 adapters: tuple[str, ...] = (), models: str | None = None, extra_args: tuple[str, ...] = (),
                 startup_timeout: float = 90.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        args = [*tagger_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--db", db_url,
                "--models", models or str(ROOT / "models"), "--log-level", "warning", *extra_args]
        for spec in adapters:
            args += ["--adapter", spec]
        self.proc = subprocess.Popen(args, cwd=ROOT, env=child_env(env), stdout=self._log, stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=self.url, timeout=10, trust_env=False)
        deadline = time.monotonic() + startup_timeout
        while True:
            if self.proc.poll() is not None:
                self.stop()
                raise SystemExit(f"tagger serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if self.client.get("/healthz").status_code == 200:
                    break
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"tagger serve not healthy within {startup_timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def health(self) -> dict:
        return self.client.get("/healthz").json()

    def metrics(self) -> dict[str, float]:
        """The /metrics samples as {'name{labels}': value}."""
        out = {}
        for line in self.client.get("/metrics").text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[key] = float(value)
        return out

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.client.close()
        self._log.close()
        return self.proc.returncode


def metric_sum(metrics: Mapping[str, float], prefix: str) -> float:
    """Sum of the samples whose name (with labels) starts with `prefix`."""
    return sum(v for k, v in metrics.items() if k.startswith(prefix))


# -- PostgreSQL ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def pg_schema(base_url: str) -> Iterator[str]:
    """A database URL whose search_path is a fresh schema, dropped afterwards."""
    import sqlalchemy as sa

    from tagger.service.store import normalize_url

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(normalize_url(base_url), connect_args={"connect_timeout": 5})
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.make_url(normalize_url(base_url)).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


# -- the corpus ----------------------------------------------------------------------------------------------
def corpus_messages(data_dir: Path | None = None) -> list[dict]:
    """Every message of training_data/ as {"text", "channel", "lang"}, in file order."""
    out = []
    for path in sorted((data_dir or ROOT / "training_data").glob("*/*.jsonl")):
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    record = json.loads(line)
                    out.append({"text": record["text"], "channel": record.get("channel") or "ticket",
                                "lang": record.get("lang") or ""})
    return out
