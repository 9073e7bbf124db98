-- wrk script of bench/wrk_mix.py: POST /search (share SEARCH_SHARE of requests, a random query
-- for a random user of USERS) and POST /ingest (new content every time); reports p50/p95/p99.
-- Settings come from the environment: WRK_KEY, WRK_USERS (comma-separated), WRK_SEARCH_SHARE
-- (0..1), WRK_QUERIES (a file, one query per line).

local key = os.getenv("WRK_KEY")
local users = {}
for u in string.gmatch(os.getenv("WRK_USERS"), "[^,]+") do users[#users + 1] = u end
local share = tonumber(os.getenv("WRK_SEARCH_SHARE") or "0.8")
local queries = {}
for line in io.lines(os.getenv("WRK_QUERIES")) do queries[#queries + 1] = line end

local counter = 0
local thread_id = 0

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
end

function init(args)
  math.randomseed(os.time() * 1000 + (tid or 0))
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-API-Key"] = key
end

local function quote(s)
  return '"' .. s:gsub('\\', '\\\\'):gsub('"', '\\"') .. '"'
end

function request()
  local user = users[math.random(#users)]
  if math.random() < share then
    local q = queries[math.random(#queries)]
    return wrk.format("POST", "/search", nil,
      '{"query":' .. quote(q) .. ',"user_id":' .. quote(user) .. ',"top_k":10}')
  end
  counter = counter + 1
  local text = "wrk note " .. tostring(tid) .. "-" .. tostring(counter) .. "-" .. tostring(math.random(1e9))
    .. ": " .. queries[math.random(#queries)]
  return wrk.format("POST", "/ingest", nil,
    '{"content":' .. quote(text) .. ',"content_type":"fact","source_type":"bench-write","user_id":'
    .. quote(user) .. '}')
end

function done(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_us=%d errors_connect=%d errors_read=%d errors_write=%d "
    .. "errors_status=%d errors_timeout=%d p50_us=%d p95_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max))
end
