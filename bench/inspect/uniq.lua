local id = tostring({}):gsub("[^%x]", "")
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/search?q=best+pizza+in+town+" .. id .. "+" .. n, {["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"})
end
