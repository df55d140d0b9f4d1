wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"fileName": "test-b2.png", "contentType": "image/png"}'
