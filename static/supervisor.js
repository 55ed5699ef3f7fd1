// Live updates for the wallboard: the server sends the board as HTML (rendered and escaped
// by its templates, forms and CSRF tokens included) whenever it changes. No inline script
// (CSP); without JavaScript the page reloads itself every 10 seconds instead.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) { return; }
  var source = new EventSource(live.getAttribute("data-events"));
  source.addEventListener("board", function (e) {
    // Do not replace a form the supervisor is filling in (a move's reason).
    var active = document.activeElement;
    if (active && live.contains(active) && active.tagName !== "BUTTON" && active.tagName !== "BODY") { return; }
    // Keep open lists open.
    var open = [];
    live.querySelectorAll("details[open]").forEach(function (d) {
      var tile = d.closest("[data-queue]");
      if (tile) { open.push(tile.getAttribute("data-queue")); }
    });
    live.innerHTML = e.data;
    open.forEach(function (q) {
      var d = live.querySelector('[data-queue="' + q + '"] details');
      if (d) { d.open = true; }
    });
  });
}());
