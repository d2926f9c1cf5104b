// pgweave dashboard: follow the engine's events (Server-Sent Events) and have htmx re-fetch
// the live parts of the page ([data-live]) – at most once per the body's data-refresh-ms
// (300 ms on a run's page, 2 s on the pages that aggregate), whatever the event rate.
(function () {
  "use strict";
  if (!document.querySelector("[data-live]") || !window.EventSource) return;
  var runId = document.body.getAttribute("data-run-id");
  var url = "/events" + (runId ? "?run_id=" + encodeURIComponent(runId) : "");
  var indicator = document.getElementById("live-status");
  var pending = null;
  var delay = parseInt(document.body.getAttribute("data-refresh-ms"), 10) || 2000;

  function say(text) { if (indicator) indicator.textContent = text; }

  function refresh() {
    pending = null;
    document.querySelectorAll("[data-live]").forEach(function (el) {
      window.htmx.trigger(el, "pgweave-refresh");
    });
  }

  var source = new EventSource(url);
  source.addEventListener("open", function () { say("live"); refresh(); });
  source.addEventListener("error", function () { say("reconnecting…"); });
  source.addEventListener("pgflow", function () {
    if (pending === null) pending = window.setTimeout(refresh, delay);
  });
})();
