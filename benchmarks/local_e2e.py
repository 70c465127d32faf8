"""Benchmark: a batch end to end on the local platform vs the emulator's raw push rate.

    .venv/bin/python benchmarks/local_e2e.py [--items 1000] [--json]

In one run, on one Pub/Sub emulator:

1. **raw push rate**: ``--items`` messages published to a topic whose push subscription
   delivers to a trivial endpoint (a uvicorn app answering 204, in its own process), timed from
   the first publish to the last distinct delivery; measured before and after the batch, the
   mean is the reference;
2. **the platform**: a ``--items`` batch through the coordinator's ``/start`` (the prod
   topology: request topic -> worker -> ready topic -> coordinator, Firestore state per item),
   timed from ``/start`` to ``completed``; items per second;
3. the **ratio** (platform / raw; the target is >= 0.15 on this 2-core machine: each item
   takes two push hops and Firestore writes where the raw path takes one hop);
4. **each hop's median service time** (the services' ``/debug/timings``, turned on with
   ``REQUEST_TIMINGS=1``) beside the push cycle the rate implies (the emulator keeps 2 pushes
   in flight per subscription, so a hop's cycle is 2 / items per second);
5. **CPU milliseconds per item** of each service and emulator process (psutil, over the batch);
6. the **highest write rate on any single document** during the batch: every change of the
   batch document and its transitions, seen by Firestore listeners (each commit is one
   change), as the most changes of one document within any 1 s window and over the batch.
   Items and completions are written at most twice each by construction; a listener on the
   items collection is not used because the emulator re-runs a collection listener's query on
   every write (measured: 78 ms of emulator CPU per item and 5.4 GB resident with one on);
7. the **peak resident memory** (``VmHWM``) of each process, and the machine's load average
   before and after (the cores are shared: read the figures beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RAW_PROJECT = "bench-raw"


# --- the trivial endpoint (run by uvicorn in its own process) ----------------------------
_count = 0
_seen: set[str] = set()
_inflight = [0, 0]  # now, max
_DELAY_S = float(os.environ.get("TRIVIAL_DELAY_MS", "0")) / 1000


async def trivial_app(scope, receive, send):  # pragma: no cover - runs under uvicorn
    global _count
    if scope["type"] != "http":
        return
    body = b""
    while True:
        event = await receive()
        body += event.get("body", b"")
        if not event.get("more_body"):
            break
    if scope["method"] == "GET":
        payload = json.dumps(
            {"distinct": len(_seen), "deliveries": _count, "max_in_flight": _inflight[1]}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        return
    _inflight[0] += 1
    _inflight[1] = max(_inflight)
    if _DELAY_S:
        import asyncio

        await asyncio.sleep(_DELAY_S)
    _inflight[0] -= 1
    _count += 1
    try:
        _seen.add(json.loads(body)["message"]["messageId"])
    except (ValueError, KeyError):
        pass
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def raw_push_rate(
    pubsub_host: str, n: int, round_no: int, log_dir: Path, *, delay_ms: int = 0
) -> dict:
    """Publish ``n`` messages to a push subscription on a trivial endpoint; deliveries/s.

    ``delay_ms``: the endpoint waits that long before answering (to see how many pushes the
    emulator keeps in flight).
    """
    from scripts import processes
    from scripts.local._apply import PubSubAdmin

    port = processes.free_port()
    rec = processes.spawn(
        "trivial-endpoint",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(ROOT / "benchmarks"),
            "local_e2e:trivial_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
        ],
        env={
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(ROOT),
            "TRIVIAL_DELAY_MS": str(delay_ms),
        },
        cwd=ROOT,
        log_path=log_dir / "trivial-endpoint.log",
        port=port,
    )
    try:
        from scripts.local._services import wait_healthy

        wait_healthy(rec, port)
        with PubSubAdmin(pubsub_host, RAW_PROJECT) as admin:
            topic = admin.topic_path(f"raw-{round_no}")
            admin.publisher.create_topic(request={"name": topic})
            admin.subscriber.create_subscription(
                request={
                    "name": admin.subscription_path(f"raw-push-{round_no}"),
                    "topic": topic,
                    "push_config": {"push_endpoint": f"http://127.0.0.1:{port}/"},
                    "ack_deadline_seconds": 600,
                }
            )
            from google.cloud import pubsub_v1

            os.environ["PUBSUB_EMULATOR_HOST"] = pubsub_host
            publisher = pubsub_v1.PublisherClient()
            t0 = time.monotonic()
            futures = [publisher.publish(topic, json.dumps({"i": i}).encode()) for i in range(n)]
            for f in futures:
                f.result(timeout=60)
            published = time.monotonic() - t0
            deadline = time.monotonic() + 300
            while _get(f"http://127.0.0.1:{port}/")["distinct"] < n:
                if time.monotonic() > deadline:
                    raise RuntimeError("raw push did not deliver every message in 300 s")
                time.sleep(0.02)
            elapsed = time.monotonic() - t0
            counts = _get(f"http://127.0.0.1:{port}/")
            publisher.stop()
        return {
            "messages": n,
            "elapsed_s": round(elapsed, 3),
            "publish_s": round(published, 3),
            "per_s": round(n / elapsed, 1),
            "deliveries": counts["deliveries"],
            "delay_ms": delay_ms,
            "max_in_flight": counts["max_in_flight"],
        }
    finally:
        processes.stop(rec, grace=3)


class WriteWatch:
    """Firestore listeners on one batch's documents; every change's update time per document."""

    def __init__(self, db, batch_id: str) -> None:
        self.times: dict[str, set[float]] = {}
        ref = db.collection("prediction_batches").document(batch_id)
        self._watches = [
            ref.on_snapshot(self._docs),
            ref.collection("transitions").on_snapshot(self._collection),
        ]

    def _note(self, snap) -> None:
        if snap.exists and snap.update_time is not None:
            path = snap.reference.path
            self.times.setdefault(path, set()).add(snap.update_time.timestamp())

    def _docs(self, snaps, changes, read_time) -> None:
        for snap in snaps:
            self._note(snap)

    def _collection(self, snaps, changes, read_time) -> None:
        for change in changes:
            self._note(change.document)

    def stop(self) -> None:
        for w in self._watches:
            w.unsubscribe()

    def hottest(self) -> dict:
        """The document with the most writes in any 1 s window, and its writes overall."""
        best = {"document": None, "max_writes_in_1s": 0, "writes": 0, "writes_per_s": 0.0}
        for path, stamps in self.times.items():
            ts = sorted(stamps)
            window = max(sum(1 for t in ts if w <= t < w + 1.0) for w in ts)
            span = max(ts[-1] - ts[0], 1.0)
            if (window, len(ts)) > (best["max_writes_in_1s"], best["writes"]):
                best = {
                    "document": path,
                    "max_writes_in_1s": window,
                    "writes": len(ts),
                    "writes_per_s": round(len(ts) / span, 2),
                }
        return best


def _cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    import psutil

    out = {}
    for name, pid in pids.items():
        try:
            proc = psutil.Process(pid)
            total = 0.0
            for p in [proc, *proc.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system
            out[name] = total
        except psutil.Error:
            out[name] = float("nan")
    return out


def _timings(url: str) -> dict:
    try:
        return _get(url + "/debug/timings?reset=1")
    except OSError:
        return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    os.environ["NO_GCE_CHECK"] = "true"

    from scripts import processes
    from scripts.local import LocalPlatform, demo_items

    timing_env = {"REQUEST_TIMINGS": "1"}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
        state = Path(tmp)
        with LocalPlatform(
            args.stack,
            state_dir=state,
            service_env={"prediction-coordinator": timing_env, "prediction-worker": timing_env},
        ) as lp:
            t_up = time.monotonic()
            lp.up()
            up_s = time.monotonic() - t_up
            host = lp.state["emulators"]["pubsub"]["host"]
            raw = [raw_push_rate(host, args.items, 1, state)]
            lp.start_batch(demo_items(10), batch_id="bench-warmup")
            lp.wait_batch("bench-warmup", timeout=120)
            urls = {name: lp.service_url(name) for name in lp.state["services"]}
            for url in urls.values():
                _timings(url)  # reset: the warm-up is not measured
            pids = {
                name if kind == "services" else f"{name}-emulator": int(e["proc"]["pid"])
                for kind in ("services", "emulators")
                for name, e in lp.state[kind].items()
            }
            watch = WriteWatch(lp.firestore_client(), "bench-batch")
            time.sleep(0.5)
            cpu0 = _cpu_seconds(pids)
            t0 = time.monotonic()
            lp.start_batch(demo_items(args.items), batch_id="bench-batch")
            final = lp.wait_batch("bench-batch", timeout=900)
            elapsed = time.monotonic() - t0
            cpu1 = _cpu_seconds(pids)
            time.sleep(1.0)
            watch.stop()
            hops = {name: _timings(url) for name, url in urls.items()}
            raw.append(raw_push_rate(host, args.items, 2, state))
            slow = raw_push_rate(host, 300, 3, state, delay_ms=50)
            memory = {}
            for name, pid in pids.items():
                kib = processes.peak_rss_kib(pid)
                memory[name] = round(kib / 1024, 1) if kib else None
    load_after = os.getloadavg()
    raw_rate = sum(r["per_s"] for r in raw) / len(raw)
    rate = final["done"] / elapsed if elapsed else 0.0
    in_flight = slow["max_in_flight"] or 2
    cpu_ms = {
        name: round((cpu1[name] - cpu0[name]) * 1000 / max(final["done"], 1), 2) for name in pids
    }
    hop_paths = {
        "worker /": ("prediction-worker", "/"),
        "coordinator /complete": ("prediction-coordinator", "/complete"),
    }
    hop_medians = {
        label: hops.get(svc, {}).get(path, {}).get("p50_ms")
        for label, (svc, path) in hop_paths.items()
    }
    result = {
        "items": args.items,
        "stack": args.stack,
        "cores": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "up_s": round(up_s, 2),
        "batch": {
            "state": final["state"],
            "done": final["done"],
            "failed": final["failed"],
            "elapsed_s": round(elapsed, 2),
            "items_per_s": round(rate, 1),
        },
        "raw_push": raw,
        "raw_push_per_s": round(raw_rate, 1),
        "ratio": round(rate / raw_rate, 3) if raw_rate else None,
        "goal_ratio": 0.15,
        "hop_median_ms": hop_medians,
        "hop_cycle_ms": round(in_flight / rate * 1000, 2) if rate else None,
        "hop_timings": hops,
        "cpu_ms_per_item": cpu_ms,
        "hottest_document": watch.hottest(),
        "emulator_push_concurrency": slow,
        "peak_rss_mib": memory,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"load average before {result['load_average_before']}, after "
            f"{result['load_average_after']} ({result['cores']} cores)"
        )
        print(f"platform up: {result['up_s']} s")
        print(f"batch of {args.items}: {final['state']} in {elapsed:.2f} s = {rate:.1f} items/s")
        for i, r in enumerate(raw, 1):
            print(
                f"raw push #{i}: {r['messages']} messages in {r['elapsed_s']} s = "
                f"{r['per_s']} /s (publish {r['publish_s']} s, {r['deliveries']} deliveries)"
            )
        print(f"ratio platform / raw push: {result['ratio']} (target >= 0.15)")
        for label, ms in hop_medians.items():
            print(f"hop {label}: median service time {ms} ms")
        print(
            f"push cycle per hop implied by the rate ({in_flight} in flight): "
            f"{result['hop_cycle_ms']} ms"
        )
        for name, ms in cpu_ms.items():
            print(f"CPU per item {name}: {ms} ms")
        hot = result["hottest_document"]
        print(
            f"hottest document: {hot['document']}: {hot['max_writes_in_1s']} write(s) in its "
            f"busiest second, {hot['writes']} in all ({hot['writes_per_s']} /s)"
        )
        print(
            f"emulator push concurrency: at most {slow['max_in_flight']} in flight per "
            f"subscription ({slow['per_s']} /s to an endpoint answering in 50 ms)"
        )
        for name, mib in memory.items():
            print(f"peak RSS {name}: {mib} MiB")
    return 0 if final["state"] == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
