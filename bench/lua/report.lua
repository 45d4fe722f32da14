-- Shared by the bench's wrk scripts: collects each thread's counters and prints one JSON line
-- (prefixed BENCHJSON) with wrk's exact latency percentiles (its histogram has 1 us buckets).
local report = {}
local threads = {}

function report.setup(thread)
   table.insert(threads, thread)
end

function report.threads() return threads end

local function num(v) return string.format("%.17g", v) end

local function str(s)
   return '"' .. s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

-- Sums the numeric per-thread counters named in `names`; keeps the first non-empty `sample`.
function report.done(summary, latency, names, extra)
   local totals, sample = {}, nil
   for _, name in ipairs(names) do totals[name] = 0 end
   for _, t in ipairs(threads) do
      for _, name in ipairs(names) do totals[name] = totals[name] + (t:get(name) or 0) end
      local s = t:get("sample")
      if sample == nil and s ~= nil and s ~= "" then sample = s end
   end
   local e = summary.errors
   local parts = {
      '"duration_us":' .. num(summary.duration),
      '"requests":' .. num(summary.requests),
      '"bytes":' .. num(summary.bytes),
      '"errors":{"connect":' .. num(e.connect) .. ',"read":' .. num(e.read) .. ',"write":' ..
         num(e.write) .. ',"status":' .. num(e.status) .. ',"timeout":' .. num(e.timeout) .. '}',
      '"latency_us":{"p50":' .. num(latency:percentile(50)) .. ',"p90":' .. num(latency:percentile(90)) ..
         ',"p99":' .. num(latency:percentile(99)) .. ',"p999":' .. num(latency:percentile(99.9)) ..
         ',"max":' .. num(latency.max) .. ',"mean":' .. num(latency.mean) .. '}',
   }
   for name, v in pairs(totals) do table.insert(parts, str(name) .. ':' .. num(v)) end
   if sample then table.insert(parts, '"sample":' .. str(sample)) end
   for k, v in pairs(extra or {}) do table.insert(parts, str(k) .. ':' .. v) end
   io.write("BENCHJSON {" .. table.concat(parts, ",") .. "}\n")
end

return report
