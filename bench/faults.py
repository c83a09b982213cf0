"""Fault injection: calls under kills, freezes, impostors, hostile requests and load.

    python bench/faults.py            # ~2 minutes
    python bench/faults.py --quick    # fewer calls per scenario

Each scenario runs a bounded stream of calls (or a map) of a function that logs every
execution to a file, injects one fault with real processes and sockets, and prints per
scenario: calls, lost (a call that raised a target failure instead of returning),
duplicated (executions beyond one per call), wrong (a result that is not the function's),
time to recover (from the fault to the next call that completes), max latency, and, for
the load scenario, p50 and p99.9 latency. Scenarios:

  kill -9 mid-map      the local worker is killed during a map (idempotent deployment)
  SIGSTOP              the local worker is frozen during a stream of single calls
  impostor             the local worker is killed and another process binds its port
  hostile requests     2 GB Content-Length, slow headers and 300 idle connections from a
                       stranger during a stream of calls
  docker kill mid-map  the container is killed (docker kill) during a map; the warm local
                       worker is the fallback
  docker pause         the container is paused during a stream of single calls
  engine down          DOCKER_HOST is a socket this script owns and closes (the shared
                       engine is never touched): Docker, the first choice, cannot deploy
  moto down            Lambda on a moto server started here is the first choice; moto is
                       killed (SIGKILL) mid-stream; the warm local worker is the fallback
  load                 10,000 calls from 32 threads on the local worker

With a Docker engine, a warm container is the fallback of the local scenarios (the goal
"recovery <= 1 s to a warm target" needs one). The Docker and moto scenarios count runs
over TCP: each run sends a line to a listener on the Docker bridge's gateway, which a
container, a moto Lambda container and the local worker all reach. Without an engine,
local only. "in flight at fault" is the calls running at once there (processes x
threads of a map's target, or the threads of a stream).
Goals (issue 17): 0 lost, 0 wrong, 0 hangs, duplicates <= calls in flight at the fault,
recovery <= 1 s, under load no call over 100 ms and p99.9 <= 20x p50.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import common  # this script's folder is on sys.path

import straightline_sdk as straightline
from tests.support.run_log import RunLog

HERE = os.path.dirname(os.path.abspath(__file__))
HANG_S = 60.0      # a scenario still running after this counts its calls as hung


def make_function(log_path: str, delay: float = 0.0):
    def work(i):
        try:   # a container cannot see this machine's file: its runs are not in the log
            with open(log_path, "a") as f:
                f.write(f"{i} {time.time()}\n")
        except OSError:
            pass
        if delay:
            time.sleep(delay)
        return i * 2

    return work


def read_runs(log_path: str) -> list[tuple[int, float]]:
    try:
        with open(log_path) as f:
            return [(int(a), float(b)) for a, b in (line.split() for line in f if line.strip())]
    except OSError:
        return []


class Scenario:
    def __init__(self, name: str, targets: list[str], delay: float = 0.0):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="straightline-faults-")
        self.log = os.path.join(self.dir, "runs.log")
        self.h = straightline.deploy(make_function(self.log, delay), sample=(-1,),
                                     name=f"faults-{name.replace(' ', '-')}", targets=targets,
                                     target="local", idempotent=True)
        self.h.pin(None)
        if "docker" in targets:
            self.h.prewarm(["docker"])
        self.latencies: list[float] = []
        self.results: dict[int, object] = {}
        self.fault_at: float | None = None
        self.lock = threading.Lock()

    @property
    def worker(self):
        return self.h.deployed_targets["local"]

    def call(self, i: int) -> None:
        t0 = time.perf_counter()
        try:
            value = self.h(i)
        except Exception as exc:   # counted, not raised: the scenario goes on
            value = exc
        with self.lock:
            self.latencies.append(time.perf_counter() - t0)
            self.results[i] = (value, time.time())

    def stream(self, n: int, threads: int, fault, fault_after: float) -> float:
        """n calls from ``threads`` threads; ``fault()`` runs once a ``fault_after``
        share of them has completed."""
        items = iter(range(n))
        lock = threading.Lock()

        def worker():
            while True:
                with lock:
                    i = next(items, None)
                if i is None:
                    return
                self.call(i)

        pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
        t0 = time.perf_counter()
        for t in pool:
            t.start()
        if fault is not None:
            deadline = time.monotonic() + HANG_S
            while len(self.results) < n * fault_after and time.monotonic() < deadline:
                time.sleep(0.001)
            self.fault_at = time.time()
            fault()
        for t in pool:
            t.join(max(0.0, HANG_S - (time.perf_counter() - t0)))
        return time.perf_counter() - t0

    def row(self, n: int, in_flight: int | None = None) -> dict:
        runs = read_runs(self.log)
        counts: dict[int, int] = {}
        for i, _ in runs:
            if i >= 0:
                counts[i] = counts.get(i, 0) + 1
        lost = sum(1 for i in range(n) if isinstance(self.results.get(i, (None,))[0], Exception))
        hung = sum(1 for i in range(n) if i not in self.results)
        wrong = sum(1 for i, (v, _) in self.results.items()
                    if not isinstance(v, Exception) and v != i * 2)
        duplicated = sum(c - 1 for c in counts.values() if c > 1)
        recover = None
        if self.fault_at is not None:
            after = [t for v, t in self.results.values() if not isinstance(v, Exception) and t > self.fault_at]
            recover = (min(after) - self.fault_at) if after else None
        lat = self.latencies
        return {"scenario": self.name, "calls": n, "lost": lost, "hung": hung, "wrong": wrong,
                "duplicated": duplicated, "in_flight": in_flight,
                "recover_s": recover, "max_ms": max(lat) * 1e3 if lat else None,
                "p50_ms": common.percentile(lat, 0.5) * 1e3 if lat else None,
                "p999_ms": common.percentile(lat, 0.999) * 1e3 if lat else None}

    def close(self) -> None:
        self.h.undeploy()


def kill_mid_map(targets, n) -> dict:
    s = Scenario("kill -9 mid-map", targets)
    s.h(-2)      # warm; a negative index is not counted as a run
    box = {}

    def run_map():
        t0 = time.perf_counter()
        try:
            box["out"] = s.h.map(range(n), return_exceptions=True)
        except Exception as exc:
            box["out"] = exc
        box["t"] = time.perf_counter() - t0

    t = threading.Thread(target=run_map, daemon=True)
    t.start()
    deadline = time.monotonic() + HANG_S
    while len(read_runs(s.log)) < n // 3 and time.monotonic() < deadline and t.is_alive():
        time.sleep(0.005)
    s.fault_at = time.time()
    in_flight = s.worker.concurrency      # processes x threads: calls running at the kill
    for pid in _pool_pids(s.worker.pid):  # the worker and its pool's processes at once
        os.kill(pid, signal.SIGKILL)
    t.join(HANG_S)
    out = box.get("out")
    if isinstance(out, list):
        for i, v in enumerate(out):
            s.results[i] = (v, 0.0)
    s.latencies = [r.latency_s for r in s.h.calls if r.latency_s]
    done_after = [r.time for r in s.h.calls if r.outcome == "ok" and r.time > s.fault_at]
    row = s.row(n, in_flight=None)
    row["recover_s"] = (min(done_after) - s.fault_at) if done_after else None
    row["in_flight"] = in_flight
    s.close()
    return row


def _pool_pids(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [pid, *map(int, f.read().split())]
    except (OSError, ValueError):
        return [pid]


def sigstop(targets, n) -> dict:
    s = Scenario("SIGSTOP", targets, delay=0.002)
    pid = s.worker.pid
    try:
        s.stream(n, 4, lambda: os.kill(pid, signal.SIGSTOP), 0.3)
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    row = s.row(n, in_flight=4)
    s.close()
    return row


def impostor(targets, n) -> dict:
    s = Scenario("impostor", targets)
    client = s.worker.client
    record = os.path.join(s.dir, "impostor.bin")
    marker = os.path.join(s.dir, "pwned")
    proc = {}

    def fault():
        os.kill(s.worker.pid, signal.SIGKILL)
        s.worker.proc.wait()
        p = subprocess.Popen([sys.executable, os.path.join(common.ROOT, "tests", "support", "impostor.py"),
                              client.host, str(client.port), record, marker],
                             stdout=subprocess.PIPE, text=True)
        p.stdout.readline()
        proc["p"] = p

    try:
        s.stream(n, 4, fault, 0.3)
    finally:
        if "p" in proc:
            proc["p"].kill()
            proc["p"].wait()
    row = s.row(n, in_flight=4)
    row["wrong"] += int(os.path.exists(marker))   # its answer unpickled: a wrong result and worse
    s.close()
    return row


def hostile(targets, n) -> dict:
    s = Scenario("hostile requests", targets)
    client = s.worker.client
    socks = []

    def fault():
        addr = (client.host, client.port)
        for _ in range(3):
            c = socket.create_connection(addr, timeout=5)
            c.sendall(b"POST /json HTTP/1.1\r\nContent-Length: 2000000000\r\n\r\n")
            socks.append(c)
        slow = socket.create_connection(addr, timeout=5)
        slow.sendall(b"GET /health HTTP/1.1\r\nX-Slow: ")
        socks.append(slow)
        for _ in range(300):
            try:
                socks.append(socket.create_connection(addr, timeout=5))
            except OSError:
                break

    try:
        s.stream(n, 4, fault, 0.3)
    finally:
        for c in socks:
            c.close()
    row = s.row(n, in_flight=4)
    s.close()
    return row


def load(targets, n, threads=32) -> dict:
    s = Scenario("load", targets)
    s.stream(n, threads, None, 0)
    row = s.row(n, in_flight=None)
    s.close()
    return row


# -- Docker: a container's runs are logged over TCP to this machine ---------------------

def networked_function(address, cpu_s: float = 0.0, sleep_s: float = 0.0):
    def work(i):
        import socket as _socket
        import time as _time
        # one connection per process and log, kept where pickling the function cannot see it
        conns = _socket.__dict__.setdefault("_straightline_run_logs", {})
        sock = conns.get(address)
        if sock is None:
            sock = conns[address] = _socket.create_connection(address)
        sock.sendall(b"%d\n" % i)
        end = _time.perf_counter() + cpu_s
        while _time.perf_counter() < end:
            pass
        if sleep_s:
            _time.sleep(sleep_s)
        return i * 2
    return work


class NetScenario(Scenario):
    """A scenario whose runs are counted from a RunLog (Docker first, the warm local
    worker as the fallback): every request is "large", so Docker is the first choice."""

    def __init__(self, name: str, cpu_s: float = 0.0, sleep_s: float = 0.0, docker_host=None):
        self.runlog = RunLog()
        options = {"docker": {"docker_host": docker_host}} if docker_host else {}
        straightline.configure(size_threshold=1, options=options)
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="straightline-faults-")
        self.log = os.path.join(self.dir, "runs.log")
        self.h = straightline.deploy(networked_function(self.runlog.address, cpu_s, sleep_s),
                                     sample=(-1,), name=f"faults-{name.replace(' ', '-')}",
                                     targets=["docker", "local"], target="local", idempotent=True)
        self.h.prewarm(["local"])
        self.h.pin(None)
        self.latencies, self.results, self.fault_at = [], {}, None
        self.lock = threading.Lock()

    def row(self, n: int, in_flight: int | None = None) -> dict:
        with open(self.log, "w") as f:
            f.writelines(f"{i} {t}\n" for i, t in self.runlog.runs())
        return super().row(n, in_flight)

    def close(self) -> None:
        super().close()
        self.runlog.close()
        straightline.configure(reset=True)
        straightline.configure(progress=False)


def docker_kill_mid_map(targets, n) -> dict:
    if "docker" not in targets:
        raise RuntimeError("no Docker engine")
    s = NetScenario("docker kill mid-map", cpu_s=0.002)
    try:
        s.h.prewarm(["docker"])
        assert s.h(-2) == -4 and s.h.placement.target == "docker"
        container = s.h.deployed_targets["docker"].container
        in_flight = s.h.deployed_targets["docker"].concurrency
        box = {}
        t = threading.Thread(target=lambda: box.update(out=s.h.map(range(n), return_exceptions=True)),
                             daemon=True)
        t.start()
        deadline = time.monotonic() + HANG_S
        while len(s.runlog.runs()) < n // 3 and time.monotonic() < deadline and t.is_alive():
            time.sleep(0.005)
        s.fault_at = time.time()
        container.kill()
        t.join(HANG_S)
        for i, v in enumerate(box.get("out") or []):
            s.results[i] = (v, 0.0)
        s.latencies = [r.latency_s for r in s.h.calls if r.latency_s]
        done_after = [r.time for r in s.h.calls if r.outcome == "ok" and r.time > s.fault_at]
        row = s.row(n, in_flight=in_flight)
        row["recover_s"] = (min(done_after) - s.fault_at) if done_after else None
        return row
    finally:
        s.close()


def docker_pause(targets, n) -> dict:
    if "docker" not in targets:
        raise RuntimeError("no Docker engine")
    s = NetScenario("docker pause", sleep_s=0.002)
    container = None
    try:
        s.h.prewarm(["docker"])
        assert s.h(-2) == -4 and s.h.placement.target == "docker"
        container = s.h.deployed_targets["docker"].container
        s.stream(n, 4, container.pause, 0.3)
        return s.row(n, in_flight=4)
    finally:
        if container is not None:
            try:
                container.unpause()
            except Exception:
                pass
        s.close()


def engine_down(targets, n) -> dict:
    """DOCKER_HOST is a socket this script owns, relaying to the engine; closing it
    is an outage as the SDK sees it (the shared engine is never touched)."""
    if "docker" not in targets:
        raise RuntimeError("no Docker engine")
    from tests.support.engine_proxy import EngineProxy
    proxy = EngineProxy(os.path.join(tempfile.mkdtemp(prefix="straightline-engine-"), "docker.sock")).open()
    s = NetScenario("engine down", sleep_s=0.002, docker_host=proxy.url)
    try:
        s.stream(n, 4, proxy.close, 0.0)    # Docker is the first choice and cannot be deployed
        return s.row(n, in_flight=4)
    finally:
        proxy.close()
        s.close()


def moto_down(targets, n) -> dict:
    """Lambda (moto in server mode, started here) is the first choice; moto is
    killed mid-stream (SIGKILL to its process group): the calls go to the warm local
    worker. Only this server's leftover containers are removed after."""
    if "docker" not in targets:
        raise RuntimeError("no Docker engine (moto runs Lambda invocations in containers)")
    from tests.support import moto_lambda as support
    from straightline_sdk import targets as target_registry
    if not support.moto_installed():
        raise RuntimeError("moto is not installed (pip install 'moto[server,awslambda]')")
    ok, why = support.docker_images_present()
    if not ok:
        raise RuntimeError(why)
    server = support.MotoServer().start()
    saved = dict(os.environ)
    os.environ.update({"AWS_ENDPOINT_URL": server.url, "AWS_REGION": "us-east-1",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "NO_PROXY": "127.0.0.1,localhost",
                       "no_proxy": "127.0.0.1,localhost"})
    os.environ.pop("AWS_PROFILE", None)
    target_registry.clear_probes()
    s = None
    try:
        s = NetScenario("moto down", sleep_s=0.002)
        straightline.configure(rate_threshold=0.0, size_threshold=2**40)  # frequent, small: Lambda
        s.h.undeploy()
        s.h = straightline.deploy(networked_function(s.runlog.address, 0.0, 0.002), sample=(-1,),
                                  name="faults-moto-down", targets=["lambda", "local"],
                                  target="lambda", idempotent=True)
        s.h.prewarm(["local"])
        s.h.pin(None)
        assert s.h(-2) == -4

        def fault():
            os.killpg(server.proc.pid, signal.SIGKILL)

        s.stream(n, 4, fault, 0.3)
        row = s.row(n, in_flight=4)
        row["scenario"] = "moto down"
        return row
    finally:
        if s is not None:
            s.close()
        try:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait(10)
        except (ProcessLookupError, AttributeError):
            pass
        _remove_moto_containers(server)
        os.environ.clear()
        os.environ.update(saved)
        target_registry.clear_probes()


def _remove_moto_containers(server) -> None:
    """The containers this moto server started (their endpoint names its port):
    other moto servers on a shared engine keep theirs."""
    try:
        import docker
        engine = docker.from_env(timeout=10)
        for container in engine.containers.list(all=True, filters={"ancestor": server.image}):
            env = container.attrs.get("Config", {}).get("Env") or []
            if any(v.startswith("AWS_ENDPOINT_URL=") and v.endswith(f":{server.port}") for v in env):
                container.remove(force=True)
    except Exception:
        pass


def main() -> None:
    p = common.parser(__doc__)
    args = p.parse_args()
    n_stream, n_map, n_load = 2000, 2000, 10_000
    if args.quick:
        n_stream, n_map, n_load = 600, 1000, 3000
    if args.dry_run:
        n_stream, n_map, n_load = 60, 100, 200
    report = common.Report("faults", "Fault injection: calls, losses, duplicates, recovery", vars(args))
    straightline.configure(progress=False)
    targets = ["local"]
    ok, why = common.target_ready("docker") if not args.dry_run else (False, "dry run")
    if ok:
        targets = ["local", "docker"]
        report.notes.append("a warm Docker container is the fallback target")
    else:
        report.notes.append(f"local target only ({why}): a call in flight when its worker "
                            f"fails has no other target and counts as lost")
    for scenario, size in ((kill_mid_map, n_map), (sigstop, n_stream), (impostor, n_stream),
                           (hostile, n_stream), (docker_kill_mid_map, n_map),
                           (docker_pause, n_stream // 4), (engine_down, n_stream // 4),
                           (moto_down, 40), (load, n_load)):
        print(f"running {scenario.__name__} ({size} calls) ...", flush=True)
        try:
            report.rows.append(scenario(targets, size))
        except Exception as exc:   # a scenario that cannot run is reported, the rest go on
            report.skip(scenario.__name__, f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    print()
    print(report.table([("scenario", "scenario"), ("calls", "calls"), ("lost", "lost"),
                        ("hung", "hung"), ("wrong", "wrong"), ("duplicated", "duplicated"),
                        ("in_flight", "in flight at fault"), ("recover_s", "recover s"),
                        ("max_ms", "max latency ms"), ("p50_ms", "p50 ms"), ("p999_ms", "p99.9 ms")]))
    rows = {r["scenario"]: r for r in report.rows}
    faults = [r for r in report.rows if r["scenario"] != "load"]
    report.goal("0 lost, 0 hung, 0 wrong", not any(r["lost"] or r["hung"] or r["wrong"] for r in faults),
                ", ".join(f"{r['scenario']}: {r['lost']}/{r['hung']}/{r['wrong']}" for r in faults))
    report.goal("duplicates <= calls in flight at the fault",
                all(r["in_flight"] is None or r["duplicated"] <= r["in_flight"] for r in faults),
                ", ".join(f"{r['scenario']}: {r['duplicated']} <= {r['in_flight']}" for r in faults))
    report.goal("recovery <= 1 s", all(r["recover_s"] is not None and r["recover_s"] <= 1.0
                                       for r in faults if r["scenario"] != "hostile requests"),
                ", ".join(f"{r['scenario']}: {common.fmt(r['recover_s'])} s" for r in faults))
    if "load" in rows:
        r = rows["load"]
        report.goal("under load no call over 100 ms", r["max_ms"] <= 100, f"max {common.fmt(r['max_ms'])} ms")
        report.goal("under load p99.9 <= 20x p50", r["p999_ms"] <= 20 * r["p50_ms"],
                    f"p99.9 {common.fmt(r['p999_ms'])} ms, p50 {common.fmt(r['p50_ms'])} ms")
    report.finish(args.out, chart={"labels": [r["scenario"] for r in report.rows],
                                   "values": [r["max_ms"] or 0 for r in report.rows],
                                   "unit": "max latency ms", "log": True})


if __name__ == "__main__":
    main()
