-- One request, sent again and again: POST BENCH_PATH with BENCH_BODY. A 2xx answer that does not
-- contain BENCH_EXPECT is counted as `bad` (a wrong answer); non-2xx is counted by wrk itself.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")

local expect = os.getenv("BENCH_EXPECT")
wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH")
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"

bad, ok, sample = 0, 0, ""

setup = report.setup

function response(status, headers, body)
   if status < 200 or status > 299 then
      if sample == "" then sample = "HTTP " .. status .. ": " .. body:sub(1, 300) end
   elseif body:find(expect, 1, true) then
      ok = ok + 1
   else
      bad = bad + 1
      if sample == "" then sample = "unexpected answer: " .. body:sub(1, 300) end
   end
end

function done(summary, latency, requests)
   report.done(summary, latency, {"ok", "bad"})
end
