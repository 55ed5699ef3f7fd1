// Live updates for the status page: listens to the contact's server-sent events and
// puts the new plain-words texts into the page by element id. No inline script (CSP).
(function () {
  "use strict";
  var controls = document.getElementById("controls");

  // A form sent back refused: its error summary, first on the page, takes the focus (the
  // form itself may be far down on a phone).
  var summary = document.getElementById("error-summary");
  if (summary) { summary.focus(); }

  // The forms are inline only where this script runs; without it they are on pages of
  // their own (the <noscript> links), so the page can reload itself safely.
  Array.prototype.forEach.call(document.querySelectorAll("form[data-js-form]"), function (f) {
    f.hidden = false;
  });

  // Times are the caller's own: tell the server the browser's zone (a cookie it reads on
  // every page), and reload once if this page was written in another zone, so that the
  // times shown and the times typed are in the zone the page names. Not on a page that
  // answers a refused form (a reload would send it again).
  try {
    var tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (tz && controls) {
      document.cookie = "hl_tz=" + encodeURIComponent(tz) + "; path=/; max-age=31536000; SameSite=Lax";
      var page = controls.getAttribute("data-tz");
      var answered = summary || document.getElementById("notice");
      var tried = window.sessionStorage && sessionStorage.getItem("hl_tz_reloaded") === tz;
      if (page && page !== tz && !answered && !tried && document.cookie.indexOf("hl_tz=") !== -1) {
        if (window.sessionStorage) { sessionStorage.setItem("hl_tz_reloaded", tz); }
        window.location.reload();
        return;
      }
    }
  } catch (err) { /* no zone, no cookies: the page's own zone stays, and is named */ }

  // Web chat: messages arrive as `message` events (each once: numbered), the visitor's
  // go by POST without leaving the page; what they typed stays if sending fails.
  var chat = document.getElementById("chat");
  var transcript = document.getElementById("chat-transcript");
  var lastSeq = chat ? Number(chat.getAttribute("data-last-seq")) || 0 : 0;
  function addMessage(m) {
    if (!transcript || typeof m.seq !== "number" || m.seq <= lastSeq) { return; }
    lastSeq = m.seq;
    var li = document.createElement("li");
    li.className = "msg " + String(m.author);
    li.setAttribute("data-seq", String(m.seq));
    var who = document.createElement("span");
    who.className = "who";
    who.textContent = String(m.who);
    var t = document.createElement("time");
    t.textContent = String(m.time);
    var text = document.createElement("span");
    text.className = "text";
    text.textContent = String(m.text);
    li.appendChild(who);
    li.appendChild(document.createTextNode(" "));
    li.appendChild(t);
    li.appendChild(document.createTextNode(" "));
    li.appendChild(text);
    transcript.appendChild(li);
    li.scrollIntoView({ block: "nearest" });
  }
  var chatForm = document.getElementById("chat-form");
  if (chatForm && window.fetch && window.URLSearchParams && window.FormData) {
    chatForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var box = document.getElementById("chat-text");
      var error = document.getElementById("chat-error");
      function fail(message) {
        if (error) { error.textContent = message; error.hidden = false; }
      }
      fetch(chatForm.getAttribute("action"), {
        method: "POST",
        body: new URLSearchParams(new FormData(chatForm)),
        headers: { "Accept": "application/json" },
        credentials: "same-origin"
      }).then(function (r) {
        return r.json().then(function (j) { return { ok: r.ok, body: j }; }, function () {
          return { ok: false, body: { error: "Your message was not sent (" + r.status + "). Reload the page and send it again." } };
        });
      }).then(function (res) {
        if (res.ok) {
          if (box) { box.value = ""; box.focus(); }
          if (error) { error.hidden = true; }
          addMessage(res.body);
        } else {
          fail(String(res.body.error));
        }
      }, function () {
        fail("Your message was not sent: check your connection and send it again.");
      });
    });
  }

  if (!controls || !window.EventSource) { return; }
  var shown = Number(controls.getAttribute("data-version"));
  var events = controls.getAttribute("data-events");
  if (chat) { events += (events.indexOf("?") === -1 ? "?" : "&") + "after=" + lastSeq; }
  var source = new EventSource(events);
  source.addEventListener("message", function (e) {
    try { addMessage(JSON.parse(e.data)); } catch (err) { /* not a message */ }
  });
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
    // The contact's story: every step so far, in words made (and escaped) by the server;
    // written as text, never as markup.
    var story = document.getElementById("story");
    var timeline = document.getElementById("timeline");
    if (story && timeline && Array.isArray(data.timeline)) {
      while (timeline.firstChild) { timeline.removeChild(timeline.firstChild); }
      data.timeline.forEach(function (s) {
        var li = document.createElement("li");
        li.setAttribute("data-step", String(s.kind));
        if (s.time) {
          var t = document.createElement("time");
          t.textContent = String(s.time);
          li.appendChild(t);
          li.appendChild(document.createTextNode(" "));
        }
        li.appendChild(document.createTextNode(String(s.text)));
        timeline.appendChild(li);
      });
      story.hidden = data.timeline.length === 0;
    }
    // Controls the contact no longer offers go at once (connected to an agent, ended...);
    // one it offers that this page lacks needs a reload, which the hint offers.
    var offered = Array.isArray(data.options) ? data.options : null;
    var onPage = [];
    if (offered) {
      Array.prototype.forEach.call(controls.querySelectorAll("[data-kind]"), function (el) {
        var kind = el.getAttribute("data-kind");
        onPage.push(kind);
        el.hidden = offered.indexOf(kind) === -1;
      });
      var heading = document.getElementById("options");
      if (heading) { heading.hidden = offered.length === 0; }
    }
    var hint = document.getElementById("reload-hint");
    var missing = offered && offered.some(function (k) { return onPage.indexOf(k) === -1; });
    if (hint && typeof data.version === "number" && data.version !== shown && (missing || !offered)) {
      hint.hidden = false;
    }
  });
}());
