#!/usr/bin/env python3
"""Submit-to-complete latency and throughput of one photo-api server (stdlib only).

usage: engines.py BASE_URL API_KEY UPLOAD_ID LABEL [LATENCY_JOBS] [THROUGHPUT_JOBS]
Prints one JSON line: {"label", "p50_ms", "p95_ms", "jobs_per_s", ...}.
"""
import json
import statistics
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

base, key, upload, label = sys.argv[1:5]
n_lat = int(sys.argv[5]) if len(sys.argv) > 5 else 40
n_thr = int(sys.argv[6]) if len(sys.argv) > 6 else 200
JOB = {"job_type": "thumbnail", "upload_id": upload,
       "params": {"width": 64, "height": 64, "format": "jpeg", "quality": 80}}


def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers={
        "Authorization": "Bearer " + key, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def submit():
    return call("POST", "/jobs", JOB)["job_id"]


def wait(job_id, poll=0.005):
    while True:
        j = call("GET", "/jobs/" + job_id)
        if j["status"] in ("completed", "failed", "dead", "cancelled"):
            assert j["status"] == "completed", j
            return time.monotonic()
        time.sleep(poll)


# Warm-up: first jobs pay for connections, caches, workflow-task polling start.
for _ in range(3):
    wait(submit())

lat = []
for _ in range(n_lat):
    t0 = time.monotonic()
    wait(submit())
    lat.append((time.monotonic() - t0) * 1000)
lat.sort()

t0 = time.monotonic()
with ThreadPoolExecutor(8) as ex:
    ids = list(ex.map(lambda _: submit(), range(n_thr)))
submitted = time.monotonic() - t0
with ThreadPoolExecutor(8) as ex:
    ends = list(ex.map(lambda i: wait(i, 0.05), ids))
took = max(ends) - t0

print(json.dumps({
    "label": label,
    "p50_ms": round(statistics.median(lat), 1),
    "p95_ms": round(lat[int(0.95 * (len(lat) - 1))], 1),
    "max_ms": round(lat[-1], 1),
    "jobs_per_s": round(n_thr / took, 1),
    "submit_per_s": round(n_thr / submitted, 1),
    "latency_jobs": n_lat,
    "throughput_jobs": n_thr,
}))
