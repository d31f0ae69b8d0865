-- wrk script for the sample-request writes of `make bench` (bench/samples.py).
--
-- Environment:
--   BENCH_TOKEN   bearer token sent with every request
--   BENCH_MODE    "create": POST <path> a DRAFT request for a random customer with two random products
--                 "transition": POST <path><id>/transitions {"to": BENCH_TO} with If-Match, each
--                 request on its own sample request; a thread stops when its share is used up
--   BENCH_FILE    create: one customer id per line, then a line "--", then one product id per line
--                 transition: one "<id> <etag>" per line
--   BENCH_TO      the target status of a transition
--   BENCH_DEBUG   optional: print the first non-2xx answer (status and body)
--
-- done() is bench/wrk.lua's: it prints "BENCH_RESULT {json}" (that file also sets the bearer token).

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "wrk.lua")
wrk.headers["Content-Type"] = "application/json"

local mode = assert(os.getenv("BENCH_MODE"), "BENCH_MODE is not set")
local file = assert(os.getenv("BENCH_FILE"), "BENCH_FILE is not set")
local threads = {}
local prefix = wrk.path

function setup(thread)
   threads[#threads + 1] = thread
   thread:set("thread_no", #threads)
end

local customers, products, todo = {}, {}, {}

function init(_args)
   math.randomseed(os.time() * 1000 + thread_no)
   if mode == "create" then
      local target = customers
      for line in io.lines(file) do
         if line == "--" then
            target = products
         elseif line ~= "" then
            target[#target + 1] = line
         end
      end
      assert(#customers > 0 and #products > 1, "no customers or products in " .. file)
   else
      -- Every thread takes every n-th line, starting at its own number: no request is sent twice.
      local n = tonumber(os.getenv("BENCH_THREADS"))
      local i = 0
      for line in io.lines(file) do
         if i % n == thread_no - 1 then
            local id, etag = line:match("^(%S+) (.+)$")
            todo[#todo + 1] = { id = id, etag = etag }
         end
         i = i + 1
      end
   end
end

local next_todo = 0
local to = os.getenv("BENCH_TO")

function request()
   if mode == "create" then
      local first = math.random(#products)
      local second = (first % #products) + 1
      local body = string.format(
         '{"customer_id": "%s", "purpose": "Menu test", "items": '
            .. '[{"product_id": "%s", "quantity": 2}, {"product_id": "%s", "quantity": 1}]}',
         customers[math.random(#customers)], products[first], products[second])
      return wrk.format("POST", prefix, nil, body)
   end
   next_todo = next_todo + 1
   local item = todo[next_todo]
   if item == nil then
      -- Used up: stop this thread. The request returned now may still go out, but its answer is
      -- not read; make it a harmless read of the last request.
      wrk.thread:stop()
      return wrk.format("GET", prefix .. todo[#todo].id)
   end
   -- wrk.format takes the headers given instead of wrk.headers, not on top of them
   local headers = { ["If-Match"] = item.etag }
   for name, value in pairs(wrk.headers) do
      headers[name] = value
   end
   return wrk.format("POST", prefix .. item.id .. "/transitions", headers, string.format('{"to": "%s"}', to))
end

if os.getenv("BENCH_DEBUG") then
   local shown = false
   function response(status, _headers, body)
      if status >= 300 and not shown then
         shown = true
         io.write("first error answer: " .. status .. " " .. body .. "\n")
      end
   end
end
