#!/usr/bin/env python3
"""Bar-to-WebSocket latency of a running `robo-trader run`, with N passive clients.

Usage: bench/ws_latency.py DASH_URL WS_URL CLIENTS SECONDS
Opens CLIENTS WebSocket connections (Origin: loopback) that read and discard everything, waits
SECONDS, then reads the `robo_bar_to_websocket_latency_seconds` histogram from /metrics and
prints p50 and p99 (linear interpolation inside the Prometheus buckets). A benchmark, not a test.
"""
import asyncio
import sys
import urllib.request

import websockets


async def client(url, stop):
    try:
        async with websockets.connect(url, origin="http://127.0.0.1", max_size=None) as ws:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(ws.recv(), timeout=1.0)
                except asyncio.TimeoutError:
                    pass
    except Exception as e:  # a dropped client is part of the figure
        print("client ended:", type(e).__name__, file=sys.stderr)


def quantiles(metrics_text, name):
    buckets = []
    for line in metrics_text.splitlines():
        if line.startswith(name + "_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    out = {}
    for q in (0.5, 0.99):
        want, prev_le, prev_n = q * total, 0.0, 0.0
        for le, n in buckets:
            if n >= want:
                frac = 0 if n == prev_n else (want - prev_n) / (n - prev_n)
                out[q] = prev_le + frac * ((le if le != float("inf") else prev_le) - prev_le)
                break
            prev_le, prev_n = le, n
    return total, out


async def main():
    dash, ws_url, n, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    stop = asyncio.Event()
    tasks = [asyncio.create_task(client(ws_url, stop)) for _ in range(n)]
    await asyncio.sleep(secs)
    text = urllib.request.urlopen(dash.rstrip("/") + "/metrics").read().decode()
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    total, q = quantiles(text, "robo_bar_to_websocket_latency_seconds")
    print(f"clients={n} samples={int(total)} p50={q.get(0.5, float('nan'))*1e3:.2f} ms "
          f"p99={q.get(0.99, float('nan'))*1e3:.2f} ms")


asyncio.run(main())
