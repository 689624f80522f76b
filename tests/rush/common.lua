-- Shared by the morning-rush phases: each wrk thread takes every `nthreads`-th person, sends
-- each one's request once, then stops and writes `dir/done-<thread>` (wrk itself runs for
-- its whole -d; the driver interrupts it, which makes it report, once every thread is done).
-- A connection that is free after its thread's people are all sent asks /healthz instead,
-- slowly (wrk cannot leave a connection idle); those answers are not counted as people.
local next_tid = 0
function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end

function load_lines(path)
  local t = {}
  for line in io.lines(path) do t[#t + 1] = line end
  return t
end

sent, answered = 0, 0

-- The index (1-based) of this thread's next person, or nil when it has sent them all.
-- wrk calls request() once more on thread 0 before the run, to check it (script_verify_request)
-- and never sends that one: that call must not use up a person.
function next_person()
  local i = tid + sent * nthreads + 1
  if i > n then return nil end
  if tid == 0 and not verified then
    verified = true
    return i
  end
  sent = sent + 1
  return i
end

function filler()
  all_sent = true
  return wrk.format("GET", "/healthz")
end

-- Once a thread has sent all its people, its idle connections ask /healthz only twice a
-- second, so they take nothing from the requests still being answered.
function delay()
  if all_sent then return 500 end
  return 0
end

-- The answer of /healthz (a 204 has no body at all).
function is_filler(body)
  return body ~= nil and body:find('"status":"ok"') ~= nil
end

function count_answer()
  answered = answered + 1
  if answered == math.ceil((n - tid) / nthreads) then
    local f = io.open(dir .. "/done-" .. tid, "w")
    f:write("done\n")
    f:close()
    wrk.thread:stop()
  end
end
