"""Load on `python -m jaxgenre.serve`: requests/s and latency percentiles for classify and
convert at 1, 4 and 16 concurrent clients, with micro-batching on (`--max_batch_requests 16`)
and off (`1`), in one run; the ratio on/off is the figure. Also the conversion real-time factor
(seconds of audio converted per second of wall time, over all clients).

  python -m benchmarks.serve_load --classifier runs/demo --generator runs/stargan_demo
      [--clients 1,4,16] [--requests 32] [--repeats 3] [--classify_seconds 10]
      [--convert_seconds 6]

Both servers are real processes on 127.0.0.1 (one CPU device each, warmed up before the clock
starts), up side by side and taking turns round by round; each client is a thread sending the
same WAV (a tone with vibrato) over a fresh HTTP connection, one request at a time. Bounded:
`--repeats` rounds of `--requests` per level (at least one per client), each request with a
600 s timeout; the median round's requests/s is reported, the latency percentiles over all
rounds. Needs the serve extra.
"""
import argparse
import concurrent.futures
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import numpy as np
import soundfile

from benchmarks.common import machine

RATE = 22050


def _wav(seconds: float) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    x = 0.3 * np.sin(2 * np.pi * 220 * t + 3 * np.sin(2 * np.pi * 5 * t))
    f = io.BytesIO()
    soundfile.write(f, x.astype(np.float32), RATE, format="WAV", subtype="PCM_16")
    return f.getvalue()


def _form(fields: dict, content: bytes) -> tuple[bytes, dict]:
    boundary = uuid.uuid4().hex
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                    .encode() for k, v in fields.items())
    body += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="clip.wav"'
             "\r\nContent-Type: audio/wav\r\n\r\n").encode() + content + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), {
        "Content-Type": f"multipart/form-data; boundary={boundary}"}


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, args, batch_requests: int):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
        cmd = [sys.executable, "-m", "jaxgenre.serve", "--classifier", args.classifier,
               "--port", str(self.port), "--max_batch_requests", str(batch_requests),
               "--queue_size", str(4 * max(args.clients)),
               "--max_convert_seconds", str(args.convert_seconds)]
        if args.generator:
            cmd += ["--generator", args.generator]
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log")  # never a full pipe
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=self.log,
                                     text=True)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise SystemExit(f"the server ended: {self.log.read()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.5)
        self.stop()
        raise SystemExit("the server was not ready within 600 s")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)


def _one(url: str, body: bytes, headers: dict) -> tuple[int, float]:
    start = time.perf_counter()
    req = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    except (urllib.error.URLError, OSError):  # refused, reset, timed out: counted as failed
        status = 0
    return status, time.perf_counter() - start


def load(urls: dict, body: bytes, headers: dict, clients: int, requests: int,
         repeats: int) -> dict:
    """For each server in `urls` ({mode: url}), `repeats` rounds of `requests` requests (at least
    one per client) from `clients` threads, one at a time each; the servers take turns round by
    round, so that drift in the machine's load hits both alike. Per mode: the median round's
    requests/s, latency percentiles over every round."""
    total = max(requests, clients)
    rates = {mode: [] for mode in urls}
    latencies = {mode: [] for mode in urls}
    for _ in range(repeats):
        for mode, url in urls.items():
            with concurrent.futures.ThreadPoolExecutor(clients) as pool:
                start = time.perf_counter()
                results = list(pool.map(lambda _: _one(url, body, headers), range(total)))
                wall = time.perf_counter() - start
            good = [seconds for status, seconds in results if status == 200]
            rates[mode].append(len(good) / wall)
            latencies[mode] += good
    out = {}
    for mode in urls:
        if len(latencies[mode]) < 2:
            raise SystemExit(f"{mode}: {len(latencies[mode])} of {total * repeats} requests "
                             "succeeded; see the server's log.")
        q = statistics.quantiles(latencies[mode], n=100, method="inclusive")
        out[mode] = {"requests": total * repeats, "ok": len(latencies[mode]),
                     "rps": statistics.median(rates[mode]), "p50": q[49], "p95": q[94],
                     "p99": q[98]}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classifier", required=True)
    parser.add_argument("--generator")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--requests", type=int, default=32, help="Requests per round.")
    parser.add_argument("--repeats", type=int, default=3, help="Rounds per level (the median "
                        "round's requests/s is reported).")
    parser.add_argument("--classify_seconds", type=float, default=10.0)
    parser.add_argument("--convert_seconds", type=float, default=6.0)
    parser.add_argument("--json", help="Also write the results here.")
    args = parser.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    jobs = [("classify", _form({}, _wav(args.classify_seconds)), args.classify_seconds)]
    if args.generator:
        jobs.append(("convert", _form({"to": "Rock"}, _wav(args.convert_seconds)),
                     args.convert_seconds))
    print(f"machine: {machine()}", flush=True)
    rows = []
    servers = {}
    try:
        for mode, batch_requests in (("batched", 16), ("unbatched", 1)):
            servers[mode] = Server(args, batch_requests)
        for endpoint, (body, headers), seconds in jobs:
            urls = {mode: f"{server.url}/v1/{endpoint}" for mode, server in servers.items()}
            for url in urls.values():
                _one(url, body, headers)  # the first request of each: imports
            for clients in args.clients:
                results = load(urls, body, headers, clients, args.requests, args.repeats)
                for mode, r in results.items():
                    r.update(mode=mode, endpoint=endpoint, clients=clients,
                             realtime=r["rps"] * seconds)
                    rows.append(r)
                    print(f"{mode:9s} {endpoint:8s} clients {clients:2d}: {r['rps']:6.2f} req/s, "
                          f"p50 {r['p50']:.3f} s, p95 {r['p95']:.3f} s, p99 {r['p99']:.3f} s, "
                          f"{r['realtime']:6.1f} s of audio per s ({r['ok']}/{r['requests']} ok)",
                          flush=True)
    finally:
        for server in servers.values():
            server.stop()
    print("\n| endpoint | clients | batched req/s | unbatched req/s | ratio | batched p50 / p95 / "
          "p99 (s) | unbatched p50 / p95 / p99 (s) | audio s per s (batched) |")
    print("|---|---|---|---|---|---|---|---|")
    for endpoint, _, _ in jobs:
        for clients in args.clients:
            on, off = (next(r for r in rows if (r["mode"], r["endpoint"], r["clients"])
                            == (mode, endpoint, clients)) for mode in ("batched", "unbatched"))
            print(f"| {endpoint} | {clients} | {on['rps']:.2f} | {off['rps']:.2f} | "
                  f"{on['rps'] / off['rps']:.2f} | {on['p50']:.3f} / {on['p95']:.3f} / "
                  f"{on['p99']:.3f} | {off['p50']:.3f} / {off['p95']:.3f} / {off['p99']:.3f} | "
                  f"{on['realtime']:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
