-- wrk body script for the B3 serving benchmark (bench/bench_serving.py).
--
--   wrk -t1 -c8 -d10s --latency -s bench/wrk/post_json.lua http://127.0.0.1:PORT/predict -- BODY.json
--
-- POSTs the JSON file given after `--` on every request. done() prints one line,
-- "WRK_JSON {...}", with the latency percentiles (milliseconds), requests/s and error counts
-- that the benchmark parses.

local body_path

function init(args)
  body_path = args[1]
  if body_path == nil then
    error("usage: wrk ... -s post_json.lua URL -- BODY.json")
  end
  local f = assert(io.open(body_path, "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

local function ms(us)
  return us / 1000.0
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  local parts = {
    string.format('"requests": %d', summary.requests),
    string.format('"duration_s": %.6f', seconds),
    string.format('"requests_per_s": %.3f', summary.requests / seconds),
    string.format('"bytes": %d', summary.bytes),
    string.format('"latency_mean_ms": %.4f', ms(latency.mean)),
    string.format('"latency_stdev_ms": %.4f', ms(latency.stdev)),
    string.format('"latency_min_ms": %.4f', ms(latency.min)),
    string.format('"latency_max_ms": %.4f', ms(latency.max)),
    string.format('"p50_ms": %.4f', ms(latency:percentile(50))),
    string.format('"p75_ms": %.4f', ms(latency:percentile(75))),
    string.format('"p90_ms": %.4f', ms(latency:percentile(90))),
    string.format('"p99_ms": %.4f', ms(latency:percentile(99))),
    string.format('"p999_ms": %.4f', ms(latency:percentile(99.9))),
    string.format(
      '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}',
      e.connect, e.read, e.write, e.status, e.timeout
    ),
  }
  io.write("WRK_JSON {" .. table.concat(parts, ", ") .. "}\n")
end
