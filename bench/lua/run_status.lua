-- RunPod's asynchronous call: POST BENCH_RUN_PATH (/v2/{id}/run) with BENCH_BODY, then poll
-- GET BENCH_STATUS_PREFIX..{job id} until the job is final, like as many clients as the thread has
-- connections (BENCH_CONNECTIONS), each with one job at a time. wrk does not say which connection asks
-- for the next request, so the thread's connections share the work: the next request is a status
-- poll for the waiting job that is due first, else a new /run while fewer jobs than clients are open, else it waits (delay()) until a poll is due. BENCH_POLL_MS is the least time between two
-- polls of one job (0: poll again as soon as the answer is in).
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

local poll_us = tonumber(os.getenv("BENCH_POLL_MS") or "0") * 1000
local max_jobs = tonumber(os.getenv("BENCH_CONNECTIONS") or "1")

completed, submitted, polls, bad, sample = 0, 0, 0, 0, ""
job_ms = {}
local waiting, due, head, tail = {}, {}, 1, 0 -- FIFO of job ids to poll, in the order they are due
local open_jobs = 0
local accepted_at = {}
local run_request

setup = report.setup

function init(args)
   run_request = wrk.format("POST", os.getenv("BENCH_RUN_PATH"), nil, os.getenv("BENCH_BODY"))
end

if poll_us > 0 then
   -- Only when polls are spaced: wrk then runs every request through a timer, which costs time.
   function delay()
      if open_jobs < max_jobs or head > tail then return 0 end
      local wait_us = due[head] - now_us()
      return wait_us > 0 and math.ceil(wait_us / 1000) or 0
   end
end

function request()
   -- A poll that is due, or (all clients busy) the one due next, a little early.
   if head <= tail and (open_jobs >= max_jobs or due[head] <= now_us()) then
      local id = waiting[head]
      waiting[head], due[head] = nil, nil
      head = head + 1
      polls = polls + 1
      return wrk.format("GET", status_prefix .. id, nil, nil)
   end
   submitted = submitted + 1
   open_jobs = open_jobs + 1
   return run_request
end

local function finish()
   open_jobs = open_jobs - 1
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      finish() -- a failed /run or a failed poll: either way that job is not followed any further
      if sample == "" then sample = "HTTP " .. status .. ": " .. body:sub(1, 300) end
      return
   end
   local id = body:match('"id"%s*:%s*"([^"]+)"')
   local state = body:match('"status"%s*:%s*"([^"]+)"')
   if id == nil or state == nil then
      finish()
      bad = bad + 1
      if sample == "" then sample = "no id or status: " .. body:sub(1, 300) end
   elseif state == "IN_QUEUE" or state == "IN_PROGRESS" then
      if accepted_at[id] == nil then accepted_at[id] = now_us() end
      tail = tail + 1
      waiting[tail], due[tail] = id, now_us() + poll_us
   elseif state == "COMPLETED" and body:find(expect, 1, true) then
      finish()
      completed = completed + 1
      if accepted_at[id] ~= nil then
         table.insert(job_ms, (now_us() - accepted_at[id]) / 1000)
         accepted_at[id] = nil
      end
   else
      finish()
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
