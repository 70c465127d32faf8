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
3. the **ratio** (platform / raw; the goal is >= 0.5: each item takes two push hops and
   Firestore writes where the raw path takes one hop), and the **peak resident memory**
   (``VmHWM``) of each service and emulator process.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    os.environ["NO_GCE_CHECK"] = "true"

    from scripts import processes
    from scripts.local import LocalPlatform, demo_items

    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
        state = Path(tmp)
        with LocalPlatform(args.stack, state_dir=state) as lp:
            t_up = time.monotonic()
            lp.up()
            up_s = time.monotonic() - t_up
            host = lp.state["emulators"]["pubsub"]["host"]
            raw = [raw_push_rate(host, args.items, 1, state)]
            lp.start_batch(demo_items(10), batch_id="bench-warmup")
            lp.wait_batch("bench-warmup", timeout=120)
            t0 = time.monotonic()
            lp.start_batch(demo_items(args.items), batch_id="bench-batch")
            final = lp.wait_batch("bench-batch", timeout=900)
            elapsed = time.monotonic() - t0
            raw.append(raw_push_rate(host, args.items, 2, state))
            slow = raw_push_rate(host, 300, 3, state, delay_ms=50)
            memory = {}
            for kind in ("services", "emulators"):
                for name, e in lp.state[kind].items():
                    kib = processes.peak_rss_kib(int(e["proc"]["pid"]))
                    memory[name if kind == "services" else f"{name}-emulator"] = (
                        round(kib / 1024, 1) if kib else None
                    )
    raw_rate = sum(r["per_s"] for r in raw) / len(raw)
    rate = final["done"] / elapsed if elapsed else 0.0
    result = {
        "items": args.items,
        "stack": args.stack,
        "cores": os.cpu_count(),
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
        "emulator_push_concurrency": slow,
        "goal_ratio": 0.5,
        "peak_rss_mib": memory,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"platform up: {result['up_s']} s")
        print(f"batch of {args.items}: {final['state']} in {elapsed:.2f} s = {rate:.1f} items/s")
        for i, r in enumerate(raw, 1):
            print(
                f"raw push #{i}: {r['messages']} messages in {r['elapsed_s']} s = "
                f"{r['per_s']} /s (publish {r['publish_s']} s, {r['deliveries']} deliveries)"
            )
        print(f"ratio platform / raw push: {result['ratio']} (goal >= 0.5)")
        print(
            f"emulator push concurrency: at most {slow['max_in_flight']} in flight per "
            f"subscription ({slow['per_s']} /s to an endpoint answering in 50 ms)"
        )
        for name, mib in memory.items():
            print(f"peak RSS {name}: {mib} MiB")
    return 0 if final["state"] == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
