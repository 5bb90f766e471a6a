-- wrk script used by scripts/bench-boot: GET /v1/edges from a rotating set of public
-- client addresses (IPv4 and IPv6), forwarded by a trusted proxy, so every request
-- makes boot do a GeoIP lookup. With RATE set (requests/s per connection), requests
-- are spaced to that rate instead of sent back to back. Prints wrk-report.lua's line.
local clients = {
  "8.8.8.8", "1.1.1.1", "81.2.69.142", "203.0.113.7", "151.101.1.69",
  "2001:4860:4860::8888", "2606:4700:4700::1111", "2a00:1450:4001:82b::200e",
  "185.199.108.153", "104.16.132.229", "13.107.42.14", "2a03:2880:f12f:83:face:b00c::25de",
}
local n = 0
request = function()
  n = n + 1
  local headers = { ["X-Forwarded-For"] = clients[(n % #clients) + 1] }
  return wrk.format("GET", "/v1/edges", headers)
end
local rate = tonumber(os.getenv("RATE") or "")
if rate and rate > 0 then
  delay = function() return 1000 / rate end
end
-- The report line, shared with scripts/bench-edge (run from the repository's root).
dofile("scripts/bench/wrk-report.lua")
