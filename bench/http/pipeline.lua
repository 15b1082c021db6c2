-- wrk script: HTTP/1.1 pipelining. Each write carries DEPTH requests back to
-- back; wrk counts the requests in the buffer request() returns and waits for
-- that many responses before sending the next batch, so every connection
-- keeps DEPTH requests in flight.
--
--   BENCH_PIPELINE=16 BENCH_CONNECTIONS=16 wrk -c16 ... -s pipeline.lua URL
--
-- DEPTH comes from the environment rather than script arguments because
-- done() runs in a separate Lua state that never sees init()'s arguments.
local depth = tonumber(os.getenv("BENCH_PIPELINE") or "") or 16
local batch

init = function(args)
   local r = {}
   for i = 1, depth do
      r[i] = wrk.format(nil, wrk.path)
   end
   batch = table.concat(r)
end

request = function()
   return batch
end

-- wrk 4.1 prints broken latency percentiles (0.00us) when pipelining
-- (wg/wrk#236): it records one latency sample per batch, but its
-- coordinated-omission correction uses an interval computed from responses,
-- i.e. DEPTH times too short, and adds synthetic samples below the histogram
-- minimum, which its percentile walk never visits. Undo that correction
-- exactly (stats_correct is deterministic), then redo it with the per-batch
-- interval so the numbers mean what wrk's unpipelined percentiles mean.
-- Output: one "pipeline-latency:" line that bench/lib/bench.py parses.

-- stats_correct() from wrk's stats.c, on a {value -> count} table.
local function correct(hist, max, e)
   if e <= 0 then return end
   for n = 2 * e, max do
      local count = hist[n]
      if count and count > 0 then
         local m = n - e
         while m > e do
            hist[m] = (hist[m] or 0) + count
            m = m - e
         end
      end
   end
end

local function percentiles(hist, keys, ps)
   local total = 0
   for _, v in ipairs(keys) do total = total + hist[v] end
   local out = {}
   for _, p in ipairs(ps) do
      -- same rank rule as wrk's stats_percentile()
      local rank = math.floor((p / 100) * total + 0.5 + 0.5)
      local acc, found = 0, -1
      for _, v in ipairs(keys) do
         acc = acc + hist[v]
         if acc >= rank then found = v; break end
      end
      out[#out + 1] = found
   end
   local sum = 0
   for _, v in ipairs(keys) do sum = sum + v * hist[v] end
   return out, total, (total > 0 and sum / total or 0)
end

local function sorted_keys(hist)
   local keys = {}
   for v, c in pairs(hist) do
      if c > 0 then keys[#keys + 1] = v end
   end
   table.sort(keys)
   return keys
end

done = function(summary, latency, requests)
   local conns = tonumber(os.getenv("BENCH_CONNECTIONS") or "")
   local function fail(why)
      io.write("pipeline-latency: error=", why, "\n")
   end
   if not conns or summary.requests < conns then
      return fail("need-BENCH_CONNECTIONS")
   end
   -- latency(i) walks the histogram from its minimum on every call, so this
   -- loop is quadratic; bound it for pathological (seconds-long) tails.
   local started = os.clock()
   local seen, n = {}, #latency
   for i = 1, n do
      local v, c = latency(i)
      seen[v] = c
      if i % 256 == 0 and os.clock() - started > 5 then
         return fail("histogram-too-wide")
      end
   end
   local max = latency.max
   -- wrk: interval = runtime_us / (complete / connections), integer math.
   local e_resp = math.floor(summary.duration / math.floor(summary.requests / conns))
   local raw, keys = {}, sorted_keys(seen)
   for i = #keys, 1, -1 do
      local v = keys[i]
      local c = seen[v]
      if v > e_resp then
         local w = v + e_resp
         while w <= max do
            c = c - (raw[w] or 0)
            w = w + e_resp
         end
      end
      if c < 0 then return fail("undo-mismatch") end
      raw[v] = c
   end
   local raw_keys = sorted_keys(raw)
   local p_raw, batches, mean_raw = percentiles(raw, raw_keys, { 50, 90, 99 })

   local per_conn = math.floor(summary.requests / depth / conns)
   local fixed = {}
   for v, c in pairs(raw) do fixed[v] = c end
   if per_conn > 0 then
      correct(fixed, max, math.floor(summary.duration / per_conn))
   end
   local p, _, mean = percentiles(fixed, sorted_keys(fixed), { 50, 90, 99 })
   io.write(string.format(
      "pipeline-latency: depth=%d batches=%d p50_us=%d p90_us=%d p99_us=%d mean_us=%.1f " ..
      "raw_p50_us=%d raw_p90_us=%d raw_p99_us=%d raw_mean_us=%.1f\n",
      depth, batches, p[1], p[2], p[3], mean, p_raw[1], p_raw[2], p_raw[3], mean_raw))
end
