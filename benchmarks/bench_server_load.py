"""Load test of ``colmax serve``: concurrent clients on loopback, latency percentiles, errors.

A real server process (``python -m colmax.cli serve``, API key on, as deployed) serves an exact
index of a BEIR data set built from the shared benchmark vector cache (MiniLM, dim 384). Clients
are threads with one keep-alive ``httpx.Client`` each, sending ``POST /search`` (k=10) for the
data set's judged queries in turn. The baseline, run side by side, is the same searches made
in-process (``Engine.search`` on an ``Engine`` opened on the same folder, the exact code path
the server runs) with the same number of threads, so the difference is what HTTP, JSON and the
server's scheduling cost. Phases are interleaved within every repeat and medians reported.

Phases per repeat: 1 client (latency without queueing), ``--clients`` clients (throughput and
queueing), ``GET /health`` from ``--clients`` clients (the server's own cost per request, no
search), and ``--clients`` clients with ``--write-share`` of the requests being ``POST
/documents`` upserts (each encodes one document and commits it to disk before answering).

Usage::

    nice -n 10 .venv/bin/python benchmarks/bench_server_load.py                # Cranfield
    .venv/bin/python benchmarks/bench_server_load.py --requests 400 --repeats 3 --out run.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vectors_cache import CACHE, DATA, load_vectors

from colmax import Engine
from colmax.beir import load_beir

KEY = "bench-key"
Worker = Callable[[], Callable[[int], bool]]  # makes one client's request function


def build_index(dataset: str) -> Path:
    """An index folder of the cached vectors plus the corpus texts (built once, then reused)."""
    vecs = load_vectors(dataset)
    folder = CACHE / f"server-{dataset}-{vecs.folder.name}" / "index"
    if (folder / "manifest.json").is_file():
        return folder
    from colmax.encoders import load_encoder

    corpus = load_beir(DATA / dataset).corpus
    staging = folder.with_name("index.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    config = dict(vecs.info["encoder"])
    config.pop("dtype", None)
    with Engine(load_encoder(device="cpu", **config), path=staging) as engine:
        for start in range(0, len(vecs.doc_ids), 1000):
            ids = vecs.doc_ids[start : start + 1000]
            embeddings = [np.asarray(vecs.doc(start + i)) for i in range(len(ids))]
            engine.add([corpus[i] for i in ids], ids=ids, embeddings=embeddings)
    staging.rename(folder)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(index: Path, search_threads: int, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "colmax.cli", "serve", str(index), "--port", str(port)]
    command += ["--device", "cpu", "--no-access-log", "--search-threads", str(search_threads)]
    env = {**os.environ, "COLMAX_API_KEY": KEY}
    proc = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited; log:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", headers={"Authorization": f"Bearer {KEY}"}).is_success:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start in 10 minutes")


def run_phase(n_requests: int, clients: int, make_worker: Worker) -> dict:
    """``n_requests`` calls spread over ``clients`` threads; latency of each, and errors."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(n_requests))

    def client_loop() -> None:
        nonlocal errors
        call = make_worker()
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            start = time.perf_counter()
            try:
                ok = call(i)
            except Exception:
                ok = False
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                errors += not ok

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for f in [pool.submit(client_loop) for _ in range(clients)]:
            f.result()
    wall = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000
    return {
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "throughput_rps": len(latencies) / wall,
    }


def http_worker(
    url: str, queries: list[str], k: int, docs: list[tuple[str, str]], write_share: float
) -> Worker:
    def make() -> Callable[[int], bool]:
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=600)
        every = round(1 / write_share) if write_share > 0 else 0

        def call(i: int) -> bool:
            if every and i % every == every - 1:
                doc_id, text = docs[i % len(docs)]  # upsert the same text: content unchanged
                body = {"documents": [{"id": doc_id, "text": text}]}
                return client.post("/documents", json=body).status_code == 200
            response = client.post("/search", json={"query": queries[i % len(queries)], "k": k})
            return response.status_code == 200 and len(response.json()["results"][0]) == k

        return call

    return make


def health_worker(url: str) -> Worker:
    """``GET /health``: the server's own cost per request (auth, routing, JSON), no search."""

    def make() -> Callable[[int], bool]:
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=600)
        return lambda i: client.get("/health").status_code == 200

    return make


def inproc_worker(engine: Engine, queries: list[str], k: int) -> Worker:
    def make() -> Callable[[int], bool]:
        def call(i: int) -> bool:
            return len(engine.search(queries[i % len(queries)], k=k)) == k

        return call

    return make


def lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor()
    return next(
        (
            line.split(":", 1)[1].strip()
            for line in out.splitlines()
            if line.startswith("Model name")
        ),
        "?",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="cranfield")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=320, help="per concurrent phase")
    parser.add_argument("--single-requests", type=int, default=80, help="per 1-client phase")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--write-share", type=float, default=0.05)
    parser.add_argument("--search-threads", type=int, default=8, help="server --search-threads")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()

    import torch

    index = build_index(args.dataset)
    data = load_beir(DATA / args.dataset)
    queries = list(data.judged_queries().values())
    corpus = [(i, t) for i, t in data.corpus.items() if t.strip()][:200]
    engine = Engine.load(index, device="cpu")
    n_docs = len(engine)
    log = index.parent / "server.log"
    proc, url = start_server(index, args.search_threads, log)
    load_before = os.getloadavg()
    phases = {
        "http, 1 client": (args.single_requests, 1, http_worker(url, queries, args.k, corpus, 0)),
        "in-process, 1 thread": (args.single_requests, 1, inproc_worker(engine, queries, args.k)),
        f"http, {args.clients} clients": (
            args.requests,
            args.clients,
            http_worker(url, queries, args.k, corpus, 0),
        ),
        f"in-process, {args.clients} threads": (
            args.requests,
            args.clients,
            inproc_worker(engine, queries, args.k),
        ),
        f"http GET /health, {args.clients} clients": (
            args.requests,
            args.clients,
            health_worker(url),
        ),
        f"http, {args.clients} clients, {args.write_share:.0%} writes": (
            args.requests,
            args.clients,
            http_worker(url, queries, args.k, corpus, args.write_share),
        ),
    }
    results: dict[str, list[dict]] = {name: [] for name in phases}
    try:
        for _, clients, make in phases.values():  # warm-up: caches, threads, connections
            run_phase(2 * clients, clients, make)
        for repeat in range(args.repeats):
            for name, (n, clients, make) in phases.items():
                results[name].append(run_phase(n, clients, make))
                r = results[name][-1]
                print(
                    f"repeat {repeat + 1} {name:<32} p50 {r['p50_ms']:7.1f} ms  p95 {r['p95_ms']:7.1f} ms"
                    f"  {r['throughput_rps']:6.1f} req/s  errors {r['errors']}",
                    flush=True,
                )
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        engine.close()
    summary = {
        name: {
            key: statistics.median(r[key] for r in runs)
            for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "throughput_rps")
        }
        | {"errors": sum(r["errors"] for r in runs), "requests": sum(r["requests"] for r in runs)}
        for name, runs in results.items()
    }
    env = {
        "cpu": lscpu_model(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "documents": n_docs,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    print(
        f"\n| phase ({args.repeats} repeats) | requests | errors | p50 ms | p95 ms | p99 ms | req/s |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, s in summary.items():
        print(
            f"| {name} | {s['requests']} | {s['errors']} | {s['p50_ms']:.1f} | {s['p95_ms']:.1f} "
            f"| {s['p99_ms']:.1f} | {s['throughput_rps']:.1f} |"
        )
    single = summary["http, 1 client"]["p50_ms"] / summary["in-process, 1 thread"]["p50_ms"]
    many = (
        summary[f"http, {args.clients} clients"]["p50_ms"]
        / summary[f"in-process, {args.clients} threads"]["p50_ms"]
    )
    print(
        f"\nHTTP / in-process p50: {single:.2f}x (1 client), {many:.2f}x ({args.clients} clients)"
    )
    print(json.dumps(env, indent=2))
    if args.out:
        Path(args.out).write_text(
            json.dumps({"summary": summary, "runs": results, "env": env}, indent=2)
        )
    if any(s["errors"] for s in summary.values()):
        raise SystemExit("errors during the load test")


if __name__ == "__main__":
    main()
