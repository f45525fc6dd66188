-- post_raw.lua - wrk script: POST "10" to a raw route (bench/run.sh), the
-- fib wire format as a raw body, so the same fib-worker answers it and the
-- raw route's cost can be set against the fib route's in one run.
wrk.method = "POST"
wrk.body = "10"
wrk.headers["Content-Type"] = "text/plain"
