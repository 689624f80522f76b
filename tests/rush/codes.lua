-- Phase 1: POST /api/v1/auth/code for n people (args: n nthreads dir).
package.path = package.path .. ";" .. debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "?.lua"
require "common"
function init(args)
  n, nthreads, dir = tonumber(args[1]), tonumber(args[2]), args[3]
end
function request()
  local i = next_person()
  if not i then return filler() end
  return wrk.format("POST", "/api/v1/auth/code", {["Content-Type"] = "application/json"},
    string.format('{"email":"user%d@rush.test"}', i))
end
function response(status, headers, body)
  if not is_filler(body) then count_answer() end
end
