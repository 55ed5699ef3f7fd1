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
    // Keep a half-chosen reason if the agent is choosing one right now, and a reply
    // being typed (with the caret where it was).
    var reason = document.getElementById("reason");
    var chosen = reason && document.activeElement === reason ? reason.value : null;
    var reply = document.getElementById("reply-text");
    var typed = reply ? reply.value : "";
    var typing = reply && document.activeElement === reply;
    var caret = typing ? [reply.selectionStart, reply.selectionEnd] : null;
    live.innerHTML = e.data;
    started = Date.now();
    countdown();
    var again = document.getElementById("reason");
    if (again && chosen) { again.value = chosen; again.focus(); }
    var replyAgain = document.getElementById("reply-text");
    if (replyAgain) {
      replyAgain.value = typed;
      if (typing) { replyAgain.focus(); replyAgain.setSelectionRange(caret[0], caret[1]); }
    }
    var transcript = document.getElementById("agent-transcript");
    if (transcript && transcript.lastElementChild) { transcript.lastElementChild.scrollIntoView({ block: "nearest" }); }
  });
  // A reply goes without reloading the console: the live update shows it once stored.
  live.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!form || form.id !== "reply-form" || !window.fetch) { return; }
    ev.preventDefault();
    var box = document.getElementById("reply-text");
    fetch(form.getAttribute("action"), {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      credentials: "same-origin"
    }).then(function (r) {
      if (r.ok) {
        var now = document.getElementById("reply-text");
        if (now) { now.value = ""; now.focus(); }
      } else {
        form.submit();
      }
    }, function () { form.submit(); });
  });
}());
