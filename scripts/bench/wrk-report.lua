-- wrk script used by scripts/bench-edge: after the run, print one machine-readable
-- line so the harness does not have to parse wrk's human-oriented report.
--   WRK <requests/s> <p50 ms> <p99 ms> <MiB/s> <requests> <errors> <non-2xx/3xx>
-- errors counts connect/read/write/timeout failures; non-2xx/3xx is separate.
done = function(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format("WRK %.1f %.3f %.3f %.2f %d %d %d\n",
    summary.requests / secs,
    latency:percentile(50) / 1000,
    latency:percentile(99) / 1000,
    summary.bytes / secs / 1048576,
    summary.requests,
    e.connect + e.read + e.write + e.timeout,
    e.status))
end
