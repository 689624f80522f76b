-- Phase 2: POST /api/v1/auth/verify with each person's mailed code (args: n nthreads dir);
-- dir/codes.txt holds "email code" lines; each thread writes the session tokens it gets to
-- dir/tokens-<thread>.txt.
package.path = package.path .. ";" .. debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "?.lua"
require "common"
function init(args)
  n, nthreads, dir = tonumber(args[1]), tonumber(args[2]), args[3]
  lines = load_lines(dir .. "/codes.txt")
  out = io.open(dir .. "/tokens-" .. tid .. ".txt", "w")
end
function request()
  local i = next_person()
  if not i then return filler() end
  local email, code = lines[i]:match("(%S+) (%S+)")
  return wrk.format("POST", "/api/v1/auth/verify", {["Content-Type"] = "application/json"},
    string.format('{"email":"%s","code":"%s"}', email, code))
end
function response(status, headers, body)
  local token = body and body:match('"token":"([^"]+)"')
  if token then out:write(token, "\n"); out:flush() end
  if not is_filler(body) then count_answer() end
end
