--- Live reload for the browser, in --reload mode only.
--
-- The runtime serves two routes of its own before the app's:
-- /__moonwire/livereload.js (the script it adds to every HTML response in
-- this mode) and /__moonwire/livereload (an SSE stream on the hub channel
-- "moonwire:livereload"). After a change under the app's folder the page
-- reloads itself; when the new version fails to load, the page shows the
-- error (file:line) over itself and waits for the next save.
local M = {}

M.PREFIX = "/__moonwire/livereload"

local SCRIPT = [[
(function () {
  if (window.__moonwireLiveReload || !window.EventSource) return;
  window.__moonwireLiveReload = true;
  var box = null;
  function show(text) {
    if (!box) {
      box = document.createElement("pre");
      box.id = "moonwire-load-error";
      box.setAttribute("role", "alert");
      box.style.cssText = "position:fixed;left:0;right:0;bottom:0;max-height:60%;overflow:auto;" +
        "margin:0;padding:16px;background:#2b0d0d;color:#ffd7d7;font:13px/1.5 monospace;" +
        "white-space:pre-wrap;z-index:2147483647;border-top:3px solid #ff5c5c";
      document.body.appendChild(box);
    }
    box.textContent = "moonwire: the app failed to load; the previous version is still serving.\n\n" + text;
  }
  var es = new EventSource("/__moonwire/livereload");
  window.__moonwireLiveReload = es; /* tests wait for es.readyState === 1 */
  es.addEventListener("moonwire", function (e) {
    var nl = e.data.indexOf("\n");
    var kind = nl < 0 ? e.data : e.data.slice(0, nl);
    if (kind === "reload") location.reload();
    else if (kind === "loaderror") show(nl < 0 ? "" : e.data.slice(nl + 1));
  });
})();
]]

--- Answers the runtime's own live-reload routes; true if it did.
function M.handle(req, res, key)
  if key == M.PREFIX .. ".js" then
    res:header("Content-Type", "text/javascript; charset=utf-8"):header("Cache-Control", "no-store")
    res:send(SCRIPT)
    return true
  elseif key == M.PREFIX then
    local stream = res:sse { heartbeat = 10 }
    if stream then stream:subscribe("moonwire:livereload", { event = "moonwire" }) end
    return true
  end
  return false
end

return M
