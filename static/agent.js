// Live updates for the agent console: the server sends the console's changing part as
// HTML (rendered and escaped by the server's templates, forms and CSRF tokens included)
// whenever the agent's state, contact or queues change. No inline script (CSP); without
// JavaScript the page reloads itself every few seconds instead.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) { return; }
  var started = Date.now();
  function countdown() {
    var el = document.getElementById("wrap-up-left");
    if (!el) { return; }
    var left = Number(el.getAttribute("data-left")) - Math.floor((Date.now() - started) / 1000);
    el.textContent = String(Math.max(0, left));
  }
  setInterval(countdown, 1000);
  var source = new EventSource(live.getAttribute("data-events"));
  source.addEventListener("console", function (e) {
    // Keep a half-chosen reason if the agent is choosing one right now.
    var reason = document.getElementById("reason");
    var chosen = reason && document.activeElement === reason ? reason.value : null;
    live.innerHTML = e.data;
    started = Date.now();
    countdown();
    var again = document.getElementById("reason");
    if (again && chosen) { again.value = chosen; again.focus(); }
  });
}());
