wrk.method = "GET"
wrk.path = "/files?limit=50"
wrk.headers["X-User-Id"] = "bench-list"
