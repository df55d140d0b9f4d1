-- The reference saves whatever key it is given: a fresh one per request.
local counter = 0

threads = 0
function setup(thread)
  thread:set("thread_id", threads)
  threads = threads + 1
end
function request()
  counter = counter + 1
  local key = "bench-" .. thread_id .. "-" .. counter .. "-" .. math.random(1, 1000000000)
  return wrk.format("POST", "/save-b2-metadata", { ["Content-Type"] = "application/json" },
    '{"objectKey": "' .. key .. '", "publicFileUrl": "http://x/' .. key .. '"}')
end
