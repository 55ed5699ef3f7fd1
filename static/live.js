// Live updates for the status page: listens to the contact's server-sent events and
// puts the new plain-words texts into the page by element id. No inline script (CSP).
(function () {
  "use strict";
  var controls = document.getElementById("controls");
  if (!controls || !window.EventSource) { return; }
  var shown = Number(controls.getAttribute("data-version"));
  var source = new EventSource(controls.getAttribute("data-events"));
  source.addEventListener("status", function (e) {
    var data;
    try { data = JSON.parse(e.data); } catch (err) { return; }
    var d = data.display || {};
    ["position", "wait", "agent", "queue", "media", "state"].forEach(function (id) {
      var el = document.getElementById(id);
      if (el && typeof d[id] === "string") { el.textContent = d[id]; }
    });
    var rise = document.getElementById("rise");
    if (rise && typeof d.rise === "string") {
      rise.textContent = d.rise;
      rise.hidden = d.rise === "";
    }
    // Each move target's wait changes with that queue: keep the choices' words live.
    var select = document.getElementById("move-to");
    if (select && Array.isArray(d.targets)) {
      d.targets.forEach(function (t) {
        Array.prototype.forEach.call(select.options, function (o) {
          if (o.value === t.queue) { o.textContent = String(t.label); }
        });
      });
    }
    var notice = document.getElementById("centre-notice");
    if (notice && typeof d.notice === "string") {
      notice.textContent = d.notice;
      notice.hidden = d.notice === "";
    }
    var box = document.getElementById("callback-attempts");
    var list = document.getElementById("attempts");
    var next = document.getElementById("next-attempt");
    if (box && list && next && Array.isArray(d.attempts)) {
      while (list.firstChild) { list.removeChild(list.firstChild); }
      d.attempts.forEach(function (line) {
        var li = document.createElement("li");
        li.textContent = String(line);
        list.appendChild(li);
      });
      next.textContent = typeof d.next_attempt === "string" ? d.next_attempt : "";
      box.hidden = d.attempts.length === 0 && next.textContent === "";
    }
    // Another tab or the phone changed the contact: the controls here may be stale.
    var hint = document.getElementById("reload-hint");
    if (hint && typeof data.version === "number" && data.version !== shown) {
      hint.hidden = false;
    }
  });
}());
