-- RunPod's asynchronous call: POST BENCH_RUN_PATH (/v2/{id}/run) with BENCH_BODY, then poll
-- GET BENCH_STATUS_PREFIX..{job id} until the job is final. Each connection always has one request
-- in flight: the next request is a status poll for a job still waiting (oldest first, shared by the
-- thread's connections, since wrk does not say which connection asks) or else a new /run.
-- Counts completed jobs (`completed`), polls, wrong or failed answers (`bad`), and each job's time
-- from its /run answer to the COMPLETED status seen.
package.path = os.getenv("BENCH_LUA_DIR") .. "/?.lua;" .. package.path
local report = require("report")
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_us()
   ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
   return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
end

local expect = os.getenv("BENCH_EXPECT")
local status_prefix = os.getenv("BENCH_STATUS_PREFIX")
wrk.headers["Content-Type"] = "application/json"

completed, submitted, polls, bad, sample = 0, 0, 0, 0, ""
job_ms = {}
local waiting, head, tail = {}, 1, 0 -- FIFO of job ids to poll
local accepted_at = {}
local run_request

setup = report.setup

function init(args)
   run_request = wrk.format("POST", os.getenv("BENCH_RUN_PATH"), nil, os.getenv("BENCH_BODY"))
end

function request()
   if head <= tail then
      local id = waiting[head]
      waiting[head] = nil
      head = head + 1
      polls = polls + 1
      return wrk.format("GET", status_prefix .. id, nil, nil)
   end
   submitted = submitted + 1
   return run_request
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      if sample == "" then sample = "HTTP " .. status .. ": " .. body:sub(1, 300) end
      return
   end
   local id = body:match('"id"%s*:%s*"([^"]+)"')
   local state = body:match('"status"%s*:%s*"([^"]+)"')
   if id == nil or state == nil then
      bad = bad + 1
      if sample == "" then sample = "no id or status: " .. body:sub(1, 300) end
   elseif state == "IN_QUEUE" or state == "IN_PROGRESS" then
      if accepted_at[id] == nil then accepted_at[id] = now_us() end
      tail = tail + 1
      waiting[tail] = id
   elseif state == "COMPLETED" and body:find(expect, 1, true) then
      completed = completed + 1
      if accepted_at[id] ~= nil then
         table.insert(job_ms, (now_us() - accepted_at[id]) / 1000)
         accepted_at[id] = nil
      end
   else
      bad = bad + 1
      accepted_at[id] = nil
      if sample == "" then sample = "unexpected answer: " .. body:sub(1, 300) end
   end
end

function done(summary, latency, requests)
   local all = {}
   for _, t in ipairs(report.threads()) do
      for _, v in ipairs(t:get("job_ms") or {}) do table.insert(all, v) end
   end
   table.sort(all)
   local function pct(p)
      if #all == 0 then return "null" end
      local k = math.max(1, math.min(#all, math.ceil(p / 100 * #all)))
      return string.format("%.3f", all[k])
   end
   report.done(summary, latency, {"completed", "submitted", "polls", "bad"},
      {job_ms = '{"p50":' .. pct(50) .. ',"p99":' .. pct(99) .. ',"n":' .. #all .. '}'})
end
