-- wrk script for `make bench`.
--
-- Environment:
--   BENCH_TOKEN     bearer token sent with every request
--   BENCH_IDS_FILE  optional: one customer id per line; each request then asks for
--                   <url path><random id>, so the load is spread over many rows
--
-- done() prints one machine-readable line, "BENCH_RESULT {json}", with the counts and the
-- p50/p95/p99 latencies in microseconds (wrk's own --latency table has no p95).

wrk.headers["Authorization"] = "Bearer " .. assert(os.getenv("BENCH_TOKEN"), "BENCH_TOKEN is not set")

local ids_file = os.getenv("BENCH_IDS_FILE")
local threads = 0

function setup(thread)
   threads = threads + 1
   thread:set("thread_no", threads)
end

if ids_file and ids_file ~= "" then
   local ids = {}
   for line in io.lines(ids_file) do
      if line ~= "" then
         ids[#ids + 1] = line
      end
   end
   assert(#ids > 0, "no ids in " .. ids_file)
   local prefix = wrk.path

   function init(_args)
      math.randomseed(os.time() * 1000 + (thread_no or 0))
   end

   function request()
      return wrk.format(nil, prefix .. ids[math.random(#ids)])
   end
end

function done(summary, latency, _requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests": %d, "duration_us": %d, "p50_us": %.1f, "p95_us": %.1f, "p99_us": %.1f, '
         .. '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, "status_errors": %d}\n',
      summary.requests, summary.duration,
      latency:percentile(50), latency:percentile(95), latency:percentile(99),
      e.connect, e.read, e.write, e.timeout, e.status))
end
