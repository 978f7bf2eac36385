-- wrk script of bench/e2e: sends the requests of a list made by bench/e2e/mix.py (OUT.wrk: a length line, then
-- that many bytes, for each request) in turn, each thread starting at its own place in the list, and counts the
-- response statuses. At the end it prints one line that bench/e2e/run.sh reads:
--   E2E requests=N seconds=S rps=R p50_ms=A p90_ms=B p99_ms=C s2xx=N s403=N s429=N s503=N sother=N errors=N
--
--   E2E_MIX=/tmp/mix.wrk wrk -t2 -c64 -d15s -s bench/e2e/mix.lua URL
-- The list's path is in $E2E_MIX (or the first script argument, after the URL).

local threads = {}
local counter = 0

function setup(thread)
    thread:set("id", counter)
    counter = counter + 1
    table.insert(threads, thread)
end

local reqs = {}
local n = 0
local i = 0
s2xx, s403, s429, s503, sother = 0, 0, 0, 0, 0

function init(args)
    local path = args[1] or os.getenv("E2E_MIX")
    local f = assert(io.open(path, "rb"), "mix.lua: cannot open the request list " .. tostring(path))
    local data = f:read("*a")
    f:close()
    local pos = 1
    while pos <= #data do
        local nl = data:find("\n", pos, true)
        if not nl then break end
        local len = tonumber(data:sub(pos, nl - 1))
        reqs[#reqs + 1] = data:sub(nl + 1, nl + len)
        pos = nl + 1 + len
    end
    n = #reqs
    assert(n > 0, "mix.lua: empty request list")
    -- threads start spread over the list, so that they do not send the same request at the same time
    i = math.floor((id or 0) * n / 7) % n
end

function request()
    i = i + 1
    if i > n then i = 1 end
    return reqs[i]
end

function response(status, headers, body)
    if status == 403 then s403 = s403 + 1
    elseif status >= 200 and status < 300 then s2xx = s2xx + 1
    elseif status == 429 then s429 = s429 + 1
    elseif status == 503 then s503 = s503 + 1
    else sother = sother + 1 end
end

function done(summary, latency, requests)
    local t = {s2xx = 0, s403 = 0, s429 = 0, s503 = 0, sother = 0}
    for _, thread in ipairs(threads) do
        for k in pairs(t) do t[k] = t[k] + (thread:get(k) or 0) end
    end
    local e = summary.errors
    local secs = summary.duration / 1e6
    io.write(string.format(
        "E2E requests=%d seconds=%.3f rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f s2xx=%d s403=%d s429=%d s503=%d sother=%d errors=%d\n",
        summary.requests, secs, summary.requests / secs, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
        latency:percentile(99) / 1000, t.s2xx, t.s403, t.s429, t.s503, t.sother,
        e.connect + e.read + e.write + e.timeout))
end
