-- Phase 3: POST /api/v1/join/<code> for each signed-in person (args: n nthreads dir code);
-- dir/tokens.txt holds one session token per line.
package.path = package.path .. ";" .. debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "?.lua"
require "common"
function init(args)
  n, nthreads, dir, code = tonumber(args[1]), tonumber(args[2]), args[3], args[4]
  tokens = load_lines(dir .. "/tokens.txt")
end
function request()
  local i = next_person()
  if not i then return filler() end
  return wrk.format("POST", "/api/v1/join/" .. code,
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. tokens[i]}, "{}")
end
function response(status, headers, body)
  if not is_filler(body) then count_answer() end
end
