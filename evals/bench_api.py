"""Load benchmark of the HTTP API on 127.0.0.1: concurrent clients asking twins and ingesting events.

Starts `twinchat serve` as a child process on a free port over a temporary TWINCHAT_HOME (embedded Chroma on
disk, the MiniLM embedder, the configured LLM: SmolLM2 in process unless --llm says otherwise), seeds twins
from the Online Retail sample (`twinchat demo --no-serve`) or from a synthetic history, makes keys with
`twinchat keys create`, then:

1. baseline: one client, one request at a time, up to --baseline rounds or --baseline-seconds (this also
   loads the models before the load starts);
2. load: --clients clients, each sending one request after another, asks (POST /v1/twins/{id}/ask, a
   researcher key) mixed with ingests (POST /v1/events, an admin key), until --requests are sent or --seconds
   have passed. Requests still running then get --grace seconds to finish; the rest are counted as cut off.

Written to --out: per operation the count, the errors by status, p50/p95/max latency of the successful ones,
throughput; asks that abstained (no LLM call) apart from asks that were answered; the baseline's p50 and
the loaded/unloaded ratio (machines differ, ratios travel better); the configuration and the machine.

    python -m evals.bench_api --out evals/results/bench-api.json [--clients 8] [--requests 200] [--seconds 120]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from twinchat import __version__

ROOT = Path(__file__).resolve().parents[1]
FORMAT = "twinchat-bench-api/1"
# Questions the Online Retail twins' histories speak to (usually answered by the LLM) and questions they do
# not (usually abstained from, with no LLM call): the two cost very different amounts.
ON_TOPIC = (
    "What do you usually buy from us?",
    "Which of our products do you order most often?",
    "How much do you usually spend on an order?",
    "Do you buy Christmas decorations from us?",
)
OFF_TOPIC = (
    "What is your favourite football team?",
    "Which political party do you vote for?",
    "What is your favourite film?",
    "Do you have a driving licence?",
)
PRODUCTS = (
    ("JUMBO BAG RED RETROSPOT", 2.08),
    ("WHITE HANGING HEART T-LIGHT HOLDER", 2.95),
    ("REGENCY CAKESTAND 3 TIER", 12.75),
    ("PARTY BUNTING", 4.95),
    ("LUNCH BAG RED RETROSPOT", 1.65),
    ("SET OF 3 CAKE TINS PANTRY DESIGN", 4.95),
    ("PACK OF 72 RETROSPOT CAKE CASES", 0.55),
    ("VINTAGE JINGLE BELLS HEART", 8.25),
)


@dataclass
class Sample:
    """One request: which operation, how it ended, how long it took."""

    op: str  # ask or ingest (healthz in the baseline)
    seconds: float
    status: int | None = None  # None: no response (see error)
    error: str | None = None  # the transport exception's name, or "cut_off" at the time limit
    abstained: bool | None = None  # asks answered 200
    stored: int = 0  # ingests: new events stored

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class Plan:
    clients: int
    requests: int
    seconds: float
    grace: float
    ask_share: float
    batch: int
    seed: int
    twins: list[str]
    ingest: bool
    progress_every: float = 10.0
    issued: int = 0
    samples: list[Sample] = field(default_factory=list)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the results file (JSON)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument(
        "--requests", type=int, default=200, help="requests to send in the load phase, at most"
    )
    parser.add_argument("--seconds", type=float, default=120, help="length of the load phase, at most")
    parser.add_argument("--grace", type=float, default=45, help="time given to requests running at the end")
    parser.add_argument("--ask-share", type=float, default=0.5, help="share of asks; the rest are ingests")
    parser.add_argument("--batch", type=int, default=10, help="events per ingest request")
    parser.add_argument("--baseline", type=int, default=2, help="unloaded requests of each kind first")
    parser.add_argument("--baseline-seconds", type=float, default=60, help="no baseline round starts after")
    parser.add_argument("--customers", type=int, default=20, help="twins to seed")
    parser.add_argument(
        "--synthetic", action="store_true", help="seed a synthetic history, not Online Retail"
    )
    parser.add_argument("--data", type=Path, help="the Online Retail CSV (default: under TWINCHAT_DATA_DIR)")
    parser.add_argument("--llm", help="TWINCHAT_LLM for the server (default: the environment's, or SmolLM2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the request mix")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.requests < 1 or args.seconds <= 0 or not 0 <= args.ask_share <= 1:
        parser.error("--clients and --requests must be at least 1, --seconds above 0, --ask-share in [0, 1]")

    # The machine may be shared: what else was running shows in the load average before we start.
    load_before = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory(prefix="twinchat-bench-api-") as scratch:
        home = Path(scratch) / "home"
        env = {**os.environ, "TWINCHAT_HOME": str(home)}
        if args.llm:
            env["TWINCHAT_LLM"] = args.llm
        started = time.perf_counter()
        seeded = seed_twins(env, args, Path(scratch))
        seed_s = time.perf_counter() - started
        researcher = make_key(env, "researcher")
        admin = make_key(env, "admin")
        with Server(env, Path(scratch) / "server.log") as server:
            results = asyncio.run(benchmark(server, args, researcher=researcher, admin=admin))
        results["timings_s"] = {
            "seed": round(seed_s, 2),
            "server_start": round(server.start_s, 2),
            **results.pop("timings_s"),
        }
        results["config"] = config(args, env, seeded)
        machine_load = results["config"]["machine"]
        machine_load["load_average_before"] = load_before  # 1, 5, 15 minutes
        machine_load["load_average_after"] = [round(x, 2) for x in os.getloadavg()] if load_before else None
        results["server_log_internal_errors"] = server.internal_errors
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(headline(results), file=sys.stderr)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


# --- set-up ----------------------------------------------------------------------------------------------


def twinchat(env: dict[str, str], *args: str, timeout: float = 900) -> str:
    """Run a twinchat command as a user would; its output, or an error naming the command."""
    done = subprocess.run(
        [sys.executable, "-m", "twinchat.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"`twinchat {' '.join(args)}` failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def seed_twins(env: dict[str, str], args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    data = args.data or Path(env.get("TWINCHAT_DATA_DIR", ROOT.parent / "shared" / "data"))
    data = data if data.suffix == ".csv" else data / "online_retail" / "online_retail_sample.csv"
    if not args.synthetic and data.is_file():
        print(f"seeding {args.customers} Online Retail twins from {data} ...", file=sys.stderr)
        twinchat(env, "demo", "--no-serve", "--customers", str(args.customers), "--data", str(data))
        return {"source": "online-retail", "file": data.name, "customers": args.customers}
    path = scratch / "synthetic.jsonl"
    rows = list(synthetic_history(args.customers, seed=args.seed))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"seeding {args.customers} synthetic twins ({len(rows)} events) ...", file=sys.stderr)
    twinchat(env, "ingest", str(path), "--panel", "bench")
    note = "" if args.synthetic else f"no Online Retail sample at {data}"
    return {"source": "synthetic", "customers": args.customers, "events": len(rows), "note": note}


def synthetic_history(customers: int, *, seed: int, per_customer: int = 20) -> Iterable[dict[str, Any]]:
    rng = random.Random(f"{seed}:history")
    for c in range(customers):
        for n in range(per_customer):
            yield {
                "customer_id": f"S-{c:03d}",
                "text": order_text(rng, f"S{c:03d}{n:02d}", day=1 + n),
                "source": "purchase",
                "timestamp": f"2011-{1 + n % 12:02d}-{1 + n:02d}",
            }


def order_text(rng: random.Random, order: str, *, day: int) -> str:
    items = rng.sample(PRODUCTS, k=rng.randint(1, 3))
    lines = "; ".join(
        f"{q} x {name} at {price:.2f} GBP each" for name, price in items if (q := rng.randint(1, 12))
    )
    return f"Order {order} on 2011-12-{day:02d}: {lines}"


def make_key(env: dict[str, str], role: str) -> str:
    return json.loads(twinchat(env, "keys", "create", "--role", role, "--label", "bench", "--json"))["key"]


class Server:
    """`twinchat serve` on a free 127.0.0.1 port, its log in a file; stopped on leaving the block."""

    def __init__(self, env: dict[str, str], log: Path, *, timeout: float = 300) -> None:
        self.env, self.log, self.timeout = env, log, timeout
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.start_s = 0.0
        self.internal_errors = 0

    def __enter__(self) -> Server:
        started = time.perf_counter()
        command = [
            sys.executable,
            "-m",
            "twinchat.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        self._log = self.log.open("w")
        self.process = subprocess.Popen(
            command, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT
        )
        deadline = started + self.timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"`twinchat serve` exited with {self.process.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2, trust_env=False).status_code == 200:
                    self.start_s = time.perf_counter() - started
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise TimeoutError(f"`twinchat serve` did not answer within {self.timeout:.0f} s:\n{self.tail()}")

    def __exit__(self, *_: object) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # uvicorn's graceful stop
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        self.internal_errors = self.log.read_text(errors="replace").count("internal error")

    def tail(self, n: int = 3000) -> str:
        self._log.flush()
        return self.log.read_text(errors="replace")[-n:]


# --- the benchmark ---------------------------------------------------------------------------------------


async def benchmark(
    server: Server, args: argparse.Namespace, *, researcher: str, admin: str
) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=args.clients + 1, max_keepalive_connections=args.clients + 1)
    timeout = httpx.Timeout(args.seconds + args.grace + 60)
    async with httpx.AsyncClient(
        base_url=server.url, limits=limits, timeout=timeout, trust_env=False
    ) as http:
        spec = (await http.get("/openapi.json")).json()
        ingest = "post" in spec.get("paths", {}).get("/v1/events", {})
        listed = await http.get("/v1/twins", headers=bearer(researcher))
        listed.raise_for_status()
        twins = sorted(t["twin_id"] for t in listed.json())
        if not twins:
            raise RuntimeError("no twins were seeded")
        plan = Plan(
            args.clients,
            args.requests,
            args.seconds,
            args.grace,
            args.ask_share if ingest else 1.0,
            args.batch,
            args.seed,
            twins,
            ingest,
        )
        keys = {"ask": bearer(researcher), "ingest": bearer(admin)}
        started = time.perf_counter()
        unloaded = await baseline(http, plan, keys, repeat=args.baseline, seconds=args.baseline_seconds)
        baseline_s = time.perf_counter() - started
        started = time.perf_counter()
        await load(http, plan, keys)
        load_s = time.perf_counter() - started
    notes = []
    if not ingest:
        notes.append("ingest skipped: this server has no POST /v1/events; the load is asks only")
    cut = sum(s.error == "cut_off" for s in plan.samples)
    if cut:
        notes.append(
            f"{cut} requests were still running {args.grace:.0f} s after the time limit and were cut off"
        )
    return {
        "format": FORMAT,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "twins": len(twins),
        "load": summarize(plan.samples, load_s, issued=plan.issued),
        "baseline": baseline_summary(unloaded),
        "loaded_over_unloaded_p50": ratios(plan.samples, unloaded),
        "timings_s": {"baseline": round(baseline_s, 2), "load": round(load_s, 2)},
        "notes": notes,
    }


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def baseline(
    http: httpx.AsyncClient, plan: Plan, keys: dict[str, dict[str, str]], *, repeat: int, seconds: float
) -> list[Sample]:
    """One request at a time: the latencies the load is compared with (and the models get loaded).

    Up to ``repeat`` rounds of a health check, an ask that is likely answered, one likely abstained, an ingest;
    no round starts after ``seconds``.
    """
    print(f"baseline: one client, up to {repeat} rounds or {seconds:.0f} s", file=sys.stderr)
    rng = random.Random(f"{plan.seed}:baseline")  # a stream of its own: no client repeats its batches
    await request(http, plan, "ask", keys, rng, question=ON_TOPIC[0])  # warm-up: loads the LLM, not counted
    deadline = time.monotonic() + seconds
    samples = []
    for _ in range(repeat):
        if time.monotonic() >= deadline:
            break
        started = time.perf_counter()
        response = await http.get("/healthz")
        samples.append(Sample("healthz", time.perf_counter() - started, response.status_code))
        for question in (rng.choice(ON_TOPIC), rng.choice(OFF_TOPIC)):
            samples.append(await request(http, plan, "ask", keys, rng, question=question))
        if plan.ingest:
            samples.append(await request(http, plan, "ingest", keys, rng))
    return samples


async def load(http: httpx.AsyncClient, plan: Plan, keys: dict[str, dict[str, str]]) -> None:
    deadline = time.monotonic() + plan.seconds

    async def client(index: int) -> None:
        rng = random.Random(f"{plan.seed}:client:{index}")
        while plan.issued < plan.requests and time.monotonic() < deadline:
            plan.issued += 1
            op = "ask" if rng.random() < plan.ask_share else "ingest"
            plan.samples.append(await request(http, plan, op, keys, rng))

    async def progress() -> None:
        started = time.monotonic()
        while True:
            await asyncio.sleep(plan.progress_every)
            done = Counter(s.op for s in plan.samples)
            bad = sum(not s.ok for s in plan.samples)
            print(
                f"  {time.monotonic() - started:5.0f} s: {len(plan.samples)} of {plan.requests} done "
                f"({', '.join(f'{op} {n}' for op, n in sorted(done.items()))}), {bad} errors",
                file=sys.stderr,
            )

    print(
        f"load: {plan.clients} clients, up to {plan.requests} requests or {plan.seconds:.0f} s",
        file=sys.stderr,
    )
    reporter = asyncio.create_task(progress())
    clients = [asyncio.create_task(client(i)) for i in range(plan.clients)]
    _, running = await asyncio.wait(clients, timeout=plan.seconds + plan.grace)
    for task in running:
        task.cancel()  # request() records the cut-off request
    await asyncio.gather(*running, return_exceptions=True)
    reporter.cancel()


async def request(
    http: httpx.AsyncClient,
    plan: Plan,
    op: str,
    keys: dict[str, dict[str, str]],
    rng: random.Random,
    *,
    question: str | None = None,
) -> Sample:
    if op == "ask":
        twin = rng.choice(plan.twins)
        body: dict[str, Any] = {"question": question or rng.choice(ON_TOPIC + OFF_TOPIC)}
        path = f"/v1/twins/{twin}/ask"
    else:
        tag = f"B{rng.getrandbits(40):010x}"
        events = [
            {
                "customer_id": rng.choice(plan.twins),
                "text": order_text(rng, f"{tag}{i:02d}", day=1 + i % 28),
                "source": "purchase",
                "timestamp": f"2011-12-{1 + i % 28:02d}",
            }
            for i in range(plan.batch)
        ]
        body, path = {"events": events}, "/v1/events"
    started = time.perf_counter()
    try:
        response = await http.post(path, json=body, headers=keys[op])
    except asyncio.CancelledError:
        plan.samples.append(Sample(op, time.perf_counter() - started, error="cut_off"))
        raise
    except httpx.HTTPError as exc:
        return Sample(op, time.perf_counter() - started, error=type(exc).__name__)
    sample = Sample(op, time.perf_counter() - started, response.status_code)
    if sample.ok and op == "ask":
        sample.abstained = bool(response.json().get("abstained"))
    elif sample.ok:
        sample.stored = int(response.json().get("stored", 0))
    return sample


# --- figures ---------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between the closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency(samples: Sequence[Sample]) -> dict[str, float | None]:
    seconds = [s.seconds for s in samples]
    figures = {
        "p50": percentile(seconds, 0.5),
        "p95": percentile(seconds, 0.95),
        "max": max(seconds) if seconds else None,
        "mean": sum(seconds) / len(seconds) if seconds else None,
    }
    return {k: None if v is None else round(v, 4) for k, v in figures.items()}


def operation(samples: Sequence[Sample], wall_s: float) -> dict[str, Any]:
    """Count, errors and latency of one operation; latency and throughput count successful requests only."""
    finished = [s for s in samples if s.error != "cut_off"]
    ok = [s for s in finished if s.ok]
    by_status = Counter(str(s.status) for s in finished if s.status is not None and not s.ok)
    transport = Counter(s.error for s in finished if s.status is None)
    return {
        "count": len(finished),
        "ok": len(ok),
        "errors": len(finished) - len(ok),
        "errors_by_status": dict(sorted(by_status.items())),
        "errors_transport": dict(sorted(transport.items())),
        "server_errors": sum(s.status is not None and s.status >= 500 for s in finished),
        "cut_off": len(samples) - len(finished),
        "latency_s": latency(ok),
        "throughput_per_s": round(len(ok) / wall_s, 3) if wall_s > 0 else None,
    }


def summarize(samples: Sequence[Sample], wall_s: float, *, issued: int) -> dict[str, Any]:
    asks = [s for s in samples if s.op == "ask"]
    ingests = [s for s in samples if s.op == "ingest"]
    ops = {
        "ask": operation(asks, wall_s),
        "ask_answered": operation([s for s in asks if s.ok and not s.abstained], wall_s),
        "ask_abstained": operation([s for s in asks if s.ok and s.abstained], wall_s),
        "ingest": operation(ingests, wall_s),
    }
    stored = sum(s.stored for s in ingests)
    ops["ingest"]["events_stored"] = stored
    ops["ingest"]["events_per_s"] = round(stored / wall_s, 2) if wall_s > 0 else None
    every = operation(samples, wall_s)
    return {
        "wall_s": round(wall_s, 2),
        "issued": issued,
        **{k: every[k] for k in ("count", "ok", "errors", "server_errors", "cut_off", "throughput_per_s")},
        "errors_by_status": every["errors_by_status"],
        "errors_transport": every["errors_transport"],
        "operations": ops,
    }


def groups(samples: Sequence[Sample]) -> dict[str, list[Sample]]:
    ok = [s for s in samples if s.ok]
    return {
        "healthz": [s for s in ok if s.op == "healthz"],
        "ask_answered": [s for s in ok if s.op == "ask" and not s.abstained],
        "ask_abstained": [s for s in ok if s.op == "ask" and s.abstained],
        "ingest": [s for s in ok if s.op == "ingest"],
    }


def baseline_summary(samples: Sequence[Sample]) -> dict[str, Any]:
    failed = Counter(str(s.status or s.error) for s in samples if not s.ok)
    out: dict[str, Any] = {
        name: {"count": len(g), "latency_s": latency(g)} for name, g in groups(samples).items()
    }
    out["errors_by_status"] = dict(sorted(failed.items()))
    return out


def ratios(loaded: Sequence[Sample], unloaded: Sequence[Sample]) -> dict[str, float | None]:
    before, after = groups(unloaded), groups(loaded)
    out: dict[str, float | None] = {}
    for name in ("ask_answered", "ask_abstained", "ingest"):
        a, b = latency(after[name])["p50"], latency(before[name])["p50"]
        out[name] = round(a / b, 2) if a is not None and b else None
    return out


def config(args: argparse.Namespace, env: dict[str, str], seeded: dict[str, Any]) -> dict[str, Any]:
    unrecorded = {"TWINCHAT_HOME", "TWINCHAT_NETGUARD_LOG"}  # a temporary folder; the tests' network guard
    settings = {k: v for k, v in sorted(env.items()) if k.startswith("TWINCHAT_") and k not in unrecorded}
    return {
        "clients": args.clients,
        "requests": args.requests,
        "seconds": args.seconds,
        "grace": args.grace,
        "ask_share": args.ask_share,
        "ingest_batch": args.batch,
        "baseline_repeat": args.baseline,
        "baseline_seconds": args.baseline_seconds,
        "seed": args.seed,
        "seeded": seeded,
        "llm": env.get("TWINCHAT_LLM", "local:smollm2"),
        "embedder": env.get("TWINCHAT_EMBEDDER", "sentence-transformers:all-MiniLM-L6-v2"),
        "store": env.get("TWINCHAT_STORE", "chroma (embedded, on disk)"),
        "settings": {k: "***" if "KEY" in k else v for k, v in settings.items()},
        "twinchat": __version__,
        "commit": commit(),
        "machine": machine(),
    }


def machine() -> dict[str, Any]:
    memory = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gib": memory,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return None
    return done.stdout.strip() or None


def headline(results: dict[str, Any]) -> str:
    load = results["load"]
    lines = [
        f"{load['count']} requests in {load['wall_s']} s: {load['ok']} ok, {load['errors']} errors "
        f"({load['server_errors']} 5xx), {load['cut_off']} cut off"
    ]
    for name, op in load["operations"].items():
        lat = op["latency_s"]
        if op["ok"]:
            lines.append(
                f"  {name:14s} {op['ok']:4d} ok  p50 {lat['p50']:.3f} s  p95 {lat['p95']:.3f} s  max {lat['max']:.3f} s"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
