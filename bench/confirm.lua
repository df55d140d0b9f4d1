-- Each request confirms a different prepared key (keys file in env BENCH_KEYS).
local keys = {}
for line in io.lines(os.getenv("BENCH_KEYS")) do keys[#keys + 1] = line end
local counter = 0

threads = 0
function setup(thread)
  thread:set("thread_index", threads)
  threads = threads + 1
end
function init(args)
  counter = thread_index
end
function request()
  local key = keys[(counter % #keys) + 1]
  counter = counter + 2
  return wrk.format("POST", "/save-b2-metadata", { ["Content-Type"] = "application/json" },
    '{"objectKey": "' .. key .. '"}')
end
