#!/usr/bin/env python3
"""The client side of scripts/chaos (standard library only).

  chaos.py run STATE_FILE SECONDS THREADS API_URL...   the load: upload, confirm, list, download, delete
  chaos.py verify STATE_FILE ROWS_FILE STORE_URL ACCESS_KEY SECRET BUCKET API_URL...
                                                     the final check against Postgres, the bucket, the API

Every loop is bounded in count and time; every request has a timeout.
"""

import concurrent.futures
import datetime
import hashlib
import hmac
import http.client
import json
import os
import random
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

REQUEST_TIMEOUT = 5.0
MAX_ATTEMPTS = 8  # per step
BACKOFF_CAP = 1.0


class Retryable(Exception):
    pass


def request(method, url, body=None, headers=None, timeout=REQUEST_TIMEOUT):
    """One request: (status, body bytes). Connection-level failures raise Retryable."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        try:
            data = e.read()
        except Exception:  # noqa: BLE001 - the body of a dying connection
            data = b""
        return e.code, data
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise Retryable(repr(e)) from e


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.anomalies = []

    def inc(self, name, n=1):
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + n

    def anomaly(self, text):
        with self.lock:
            self.counts["anomalies"] = self.counts.get("anomalies", 0) + 1
            if len(self.anomalies) < 200:
                self.anomalies.append(text)


def call(stats, apis, method, path, user, body=None, headers=None, retry_404=False, deadline=None):
    """A request to a random instance, retried (bounded) on connection errors and 5xx.

    Returns (status, body, attempts) of the last answer; status None when every attempt failed
    at the connection level."""
    status, data = None, b""
    hdrs = {"X-User-Id": user}
    if body is not None:
        hdrs["Content-Type"] = "application/json"
        body = json.dumps(body).encode()
    hdrs.update(headers or {})
    for attempt in range(MAX_ATTEMPTS):
        if attempt:
            stats.inc("retries")
            time.sleep(min(BACKOFF_CAP, 0.05 * 2**attempt) * random.uniform(0.5, 1.0))
        if deadline is not None and time.time() > deadline and attempt:
            break
        api = random.choice(apis)
        try:
            status, data = request(method, api + path, body, hdrs)
        except Retryable:
            status, data = None, b""
            continue
        if status >= 500:
            stats.inc("http_5xx")
            continue
        return status, data, attempt + 1
    return status, data, MAX_ATTEMPTS


def put_object(stats, url, data, content_type):
    for attempt in range(MAX_ATTEMPTS):
        if attempt:
            stats.inc("retries")
            time.sleep(min(BACKOFF_CAP, 0.05 * 2**attempt))
        try:
            status, body = request("PUT", url, data, {"Content-Type": content_type})
        except Retryable:
            continue
        if status >= 500:
            continue
        return status, body
    return None, b""


def get_bytes(stats, apis, user, file_id):
    """Downloads a file through the API: (status, bytes or None)."""
    status, body, _ = call(stats, apis, "GET", f"/files/{file_id}/download", user, headers={"Accept": "application/json"})
    if status != 200:
        return status, None
    url = json.loads(body)["url"]
    for attempt in range(MAX_ATTEMPTS):
        if attempt:
            stats.inc("retries")
            time.sleep(min(BACKOFF_CAP, 0.05 * 2**attempt))
        try:
            s, data = request("GET", url)
        except Retryable:
            continue
        if s >= 500:
            continue
        return s, (data if s == 200 else None)
    return None, None


TYPES = ["application/octet-stream", "image/png", "text/plain", "application/pdf"]


def worker(n, apis, until, stats, records, rec_lock):
    user = f"chaos-user-{n}"
    rng = random.Random(os.urandom(8))
    i = 0
    while time.time() < until and i < 100_000:
        i += 1
        try:
            one_upload(n, i, user, rng, apis, stats, records, rec_lock)
        except Exception as e:  # noqa: BLE001 - an unexpected answer is reported, the run goes on
            stats.anomaly(f"client {n}: unexpected {e!r}")


def one_upload(n, i, user, rng, apis, stats, records, rec_lock):
    if True:
        name = f"chaos {n}-{i}.bin"
        ctype = rng.choice(TYPES)
        data = os.urandom(rng.randint(1024, 64 * 1024))
        rec = {"user": user, "name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        stats.inc("attempts")
        # 1. presign
        status, body, _ = call(stats, apis, "POST", "/presign-b2-upload", user, {"fileName": name, "contentType": ctype})
        if status != 200:
            stats.anomaly(f"presign answered {status}: {body[:200]!r}")
            return
        presigned = json.loads(body)
        key = presigned["objectKey"]
        rec.update(key=key, presigned_at=time.time(), state="presigned")
        with rec_lock:
            records.append(rec)
        # 2. PUT the bytes
        status, body = put_object(stats, presigned["presignedUrl"], data, ctype)
        if status != 200:
            stats.anomaly(f"PUT answered {status}: {body[:200]!r}")
            rec["state"] = "put_failed"
            return
        stats.inc("uploads")
        rec["state"] = "uploaded"
        if rng.random() < 0.08:  # an abandoned upload: never confirmed, for cleanup to find
            stats.inc("abandoned")
            return
        # 3. confirm (sometimes twice, on any instance: confirming is idempotent)
        status, body, attempts = call(stats, apis, "POST", "/save-b2-metadata", user, {"objectKey": key})
        if status != 200:
            rec["state"] = "confirm_uncertain" if status is None or status >= 500 else "confirm_refused"
            stats.anomaly(f"confirm of {key} answered {status} after {attempts} attempts: {body[:200]!r}")
            return
        file = json.loads(body)["file"]
        rec.update(state="confirmed", id=file["id"])
        stats.inc("confirmed")
        if file.get("size") != len(data):
            stats.anomaly(f"confirm of {key} reports size {file.get('size')}, uploaded {len(data)}")
        if rng.random() < 0.1:
            s2, b2, _ = call(stats, apis, "POST", "/save-b2-metadata", user, {"objectKey": key})
            if s2 != 200 or json.loads(b2)["file"]["id"] != file["id"]:
                stats.anomaly(f"second confirm of {key} answered {s2}: {b2[:200]!r} (first id {file['id']})")
        # 4. list: the newest file is on the first page
        status, body, _ = call(stats, apis, "GET", "/files?limit=20", user)
        if status != 200:
            stats.anomaly(f"list answered {status}: {body[:200]!r}")
        else:
            ids = [f["id"] for f in json.loads(body)["files"]]
            if file["id"] not in ids:
                stats.anomaly(f"list after confirming {key} (id {file['id']}) misses it: {ids[:5]}")
            if len(ids) != len(set(ids)):
                stats.anomaly(f"list has duplicate ids: {ids}")
        # 5. download and compare
        if rng.random() < 0.5:
            s, got = get_bytes(stats, apis, user, file["id"])
            stats.inc("downloads")
            if got is None:
                stats.anomaly(f"download of {key} failed: {s}")
            elif hashlib.sha256(got).hexdigest() != rec["sha256"]:
                stats.anomaly(f"download of {key}: different bytes ({len(got)} of {len(data)})")
        # 6. delete some
        if rng.random() < 0.3:
            rec["state"] = "delete_uncertain"
            status, body, attempts = call(stats, apis, "DELETE", f"/files/{file['id']}", user)
            if status == 200 or (status == 404 and attempts > 1):
                rec["state"] = "deleted"
                stats.inc("deleted")
            else:
                stats.anomaly(f"delete of {key} answered {status} after {attempts} attempts: {body[:200]!r}")


def run(state_file, seconds, threads, apis):
    stats, records, lock = Stats(), [], threading.Lock()
    until = time.time() + seconds
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(worker, n, apis, until, stats, records, lock) for n in range(threads)]
        for f in futures:
            f.result()
    last = max((r["presigned_at"] for r in records), default=time.time())
    with open(state_file, "w") as f:
        json.dump({"counts": stats.counts, "anomalies": stats.anomalies, "records": records, "last_presign": last}, f)
    print(f"clients done: {stats.counts}", flush=True)


# --- the bucket, listed with a SigV4-signed ListObjectsV2 ----------------------------------------


def sign(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def list_bucket(store, access_key, secret, bucket, region="us-east-1"):
    parsed = urllib.parse.urlsplit(store)
    host = parsed.netloc
    keys, token = [], None
    for _ in range(10_000):  # pages, bounded
        params = {"list-type": "2", "max-keys": "1000"}
        if token:
            params["continuation-token"] = token
        query = "&".join(
            f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}" for k, v in sorted(params.items())
        )
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload = hashlib.sha256(b"").hexdigest()
        path = f"/{bucket}"
        canonical = "\n".join(
            ["GET", path, query, f"host:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{amz_date}\n",
             "host;x-amz-content-sha256;x-amz-date", payload]
        )
        scope = f"{day}/{region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        k = sign(sign(sign(sign(("AWS4" + secret).encode(), day), region), "s3"), "aws4_request")
        signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        headers = {
            "x-amz-date": amz_date,
            "x-amz-content-sha256": payload,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
            f"SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}",
        }
        status, body = request("GET", f"{store}{path}?{query}", None, headers, timeout=30)
        if status != 200:
            raise SystemExit(f"ListObjectsV2 answered {status}: {body[:500]!r}")
        root = ET.fromstring(body)
        ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
        keys += [c.findtext(f"{ns}Key") for c in root.findall(f"{ns}Contents")]
        if root.findtext(f"{ns}IsTruncated") != "true":
            return keys
        token = root.findtext(f"{ns}NextContinuationToken")
    raise SystemExit("ListObjectsV2: too many pages")


# --- the final check ------------------------------------------------------------------------------


def verify(state_file, rows_file, store, access_key, secret, bucket, apis):
    state = json.load(open(state_file))
    counts, records = state["counts"], state["records"]
    rows = {}
    for line in open(rows_file):
        if line.strip():
            key, n = line.rstrip("\n").split("\t")
            rows[key] = int(n)
    objects = list_bucket(store, access_key, secret, bucket)
    object_set = set(objects)
    problems = []
    lost = duplicated = orphaned = 0
    by_key = {r["key"]: r for r in records if "key" in r}

    # Duplicates: a key twice in the table or in the bucket listing.
    for key, n in rows.items():
        if n != 1:
            duplicated += 1
            problems.append(f"duplicated: {key} has {n} rows")
    if len(objects) != len(object_set):
        duplicated += len(objects) - len(object_set)
        problems.append("duplicated: the bucket lists a key more than once")

    # Rows without an object, objects without a row.
    for key in rows:
        if key not in object_set:
            orphaned += 1
            problems.append(f"orphaned: row without an object: {key} ({by_key.get(key, {}).get('state', 'unknown to the clients')})")
    for key in object_set:
        if key not in rows:
            orphaned += 1
            problems.append(f"orphaned: object without a row after the sweep: {key} ({by_key.get(key, {}).get('state', 'unknown to the clients')})")
    # Rows the clients never had confirmed or left uncertain.
    for key in rows:
        st = by_key.get(key, {}).get("state")
        if st in ("deleted",):
            orphaned += 1
            problems.append(f"orphaned: a deleted file still has its row: {key}")
        elif st not in ("confirmed", "confirm_uncertain", "delete_uncertain"):
            orphaned += 1
            problems.append(f"orphaned: a row nobody confirmed: {key} (client state {st})")
    for key in object_set:
        if by_key.get(key, {}).get("state") == "deleted" and key not in rows:
            pass  # counted above as an object without a row

    # Every confirmed, not deleted upload: one row, and its bytes through the API.
    survivors = [r for r in records if r.get("state") == "confirmed"]
    stats = Stats()

    def check(r):
        if rows.get(r["key"]) is None:
            return f"lost: confirmed (id {r['id']}) but no row: {r['key']}"
        s, got = get_bytes(stats, apis, r["user"], r["id"])
        if got is None:
            return f"lost: confirmed, row present, download answered {s}: {r['key']}"
        if hashlib.sha256(got).hexdigest() != r["sha256"]:
            return f"lost: different bytes through the API ({len(got)} of {r['size']}): {r['key']}"
        return None

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        for result in pool.map(check, survivors):
            if result:
                lost += 1
                problems.append(result)
    # Uncertain confirms and deletes: either a row with the right object, or neither (checked above).
    uncertain = sum(1 for r in records if r.get("state") in ("confirm_uncertain", "delete_uncertain"))

    for p in problems[:50]:
        print("  " + p)
    if len(problems) > 50:
        print(f"  ... and {len(problems) - 50} more")
    for a in state["anomalies"][:20]:
        print("  client anomaly: " + a)
    c = counts.get
    summary = (
        f"chaos: uploads={c('uploads', 0)} confirmed={c('confirmed', 0)} deleted={c('deleted', 0)} "
        f"abandoned={c('abandoned', 0)} uncertain={uncertain} downloads={c('downloads', 0)} "
        f"kills={os.environ.get('CHAOS_KILLS', '?')} restarts={os.environ.get('CHAOS_RESTARTS', '?')} "
        f"pg_restarts={os.environ.get('CHAOS_PG_RESTARTS', '?')} retries={c('retries', 0) + stats.counts.get('retries', 0)} "
        f"http_5xx={c('http_5xx', 0)} anomalies={c('anomalies', 0)} rows={len(rows)} objects={len(object_set)} "
        f"lost={lost} duplicated={duplicated} orphaned={orphaned}"
    )
    print(summary, flush=True)
    return 1 if lost or duplicated or orphaned else 0


def main(argv):
    if len(argv) >= 5 and argv[1] == "run":
        run(argv[2], float(argv[3]), int(argv[4]), argv[5:])
        return 0
    if len(argv) >= 9 and argv[1] == "verify":
        return verify(argv[2], argv[3], argv[4], argv[5], argv[6], argv[7], argv[8:])
    if len(argv) == 6 and argv[1] == "list":
        print("\n".join(list_bucket(*argv[2:])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
