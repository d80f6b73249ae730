-- wrk script: POST a distinct TradingView alert per request (id = prefix-thread-counter), each on a new
-- connection (Connection: close) as TradingView sends them; prints one JSON line at the end.
local threads = {}
local prefix = os.getenv("BENCH_ALERT_PREFIX") or "wrk"

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  counter = 0
  ok = 0
  other = 0
end

function request()
  counter = counter + 1
  local side = (counter % 2 == 0) and "buy" or "sell"
  local body = string.format(
    '{"action":"%s","ticker":"ES1!","contracts":1,"price":%.2f,"id":"%s-%d-%d"}',
    side, 5000.25 + counter % 40, prefix, tid, counter)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["Connection"] = "close"}, body)
end

function response(status, headers, body)
  if status == 200 then ok = ok + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local ok_total, other_total = 0, 0
  for _, thread in ipairs(threads) do
    ok_total = ok_total + thread:get("ok")
    other_total = other_total + thread:get("other")
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"ok":%d,"non200":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, ok_total, other_total, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
