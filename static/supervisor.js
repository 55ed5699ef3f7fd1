// Live updates for the wallboard: the server sends the board as HTML (rendered and escaped
// by its templates, forms and CSRF tokens included) whenever it changes. No inline script
// (CSP); without JavaScript the page reloads itself every 10 seconds instead.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) { return; }
  var source = new EventSource(live.getAttribute("data-events"));
  source.addEventListener("board", function (e) {
    // Do not replace a form the supervisor is filling in (a move's reason, its queue).
    var active = document.activeElement;
    var inside = active && live.contains(active);
    if (inside && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName)) { return; }
    // Anything else focused (a list's summary, a button) gets the focus back after the
    // update, so a keyboard user is not thrown to the top of the page every few seconds.
    var refocus = null;
    if (inside && active.id) {
      refocus = "#" + active.id;
    } else if (inside && active.tagName === "SUMMARY" && active.closest("[data-queue]")) {
      refocus = '[data-queue="' + active.closest("[data-queue]").getAttribute("data-queue") + '"] summary';
    }
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
    if (refocus) {
      var again = live.querySelector(refocus);
      if (again) { again.focus(); }
    }
  });
}());
