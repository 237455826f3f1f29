-- wrk script: each connection waits 10 ms between requests, so 10 connections make about
-- 1,000 requests/s (a fixed load, below saturation). Usage:
--   wrk -t1 -c10 -d20s --latency -s bench/rate1000.lua http://127.0.0.1:5555/api/status
function delay()
  return 10
end
