-- wrk script for run.py: only done(), so wrk keeps its fast path (no Lua
-- per request).  Prints one line, "WRKJSON {...}": exact counts, error
-- counters and latency percentiles in microseconds.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, ' ..
    '"timeout": %d}, "latency_us": {"min": %d, "mean": %.2f, ' ..
    '"stdev": %.2f, "max": %d, "p50": %d, "p75": %d, "p90": %d, ' ..
    '"p99": %d, "p99.9": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(75),
    latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9)))
end
