// The staff pages' only script: live progress and the live segment count. Everything works without it.
"use strict";
(function () {
  function number(n) { return n.toLocaleString("en-US"); }
  function refresh(box) {
    fetch(box.dataset.liveUrl, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data || !data.campaigns.length) { return; }
        var c = data.campaigns[0];
        var set = function (name, text) { var el = box.querySelector('[data-field="' + name + '"]'); if (el) { el.textContent = text; } };
        set("state", c.state); set("percent", c.percent + " %"); set("sent", number(c.sent));
        set("queued", number(c.queued)); set("deferred", number(c.deferred)); set("failed", number(c.failed));
        set("rate", c.rate); set("eta", c.eta || "–"); set("reason", c.reason);
        var state = box.querySelector('[data-field="state"]'); if (state) { state.className = "state state-" + c.state; }
        var bar = box.querySelector('[data-field="bar"]'); if (bar) { bar.style.width = c.percent + "%"; }
        var meter = box.querySelector('[role="progressbar"]'); if (meter) { meter.setAttribute("aria-valuenow", c.percent); }
        box.dataset.updated = String(Date.now());
      })
      .catch(function () {});
  }
  document.querySelectorAll("[data-live-url]").forEach(function (box) {
    var seconds = Number(box.dataset.refresh) || 3;
    setInterval(function () { refresh(box); }, seconds * 1000);
  });
  var form = document.getElementById("segment-box");
  if (form) {
    var input = form.querySelector("#segment"), out = form.querySelector("#segment-result"), timer = null, asked = 0;
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        var mine = ++asked;
        fetch(form.dataset.countUrl + "?segment=" + encodeURIComponent(input.value), { credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.json() : null; })
          .then(function (data) {
            if (!data || mine !== asked) { return; }
            out.textContent = "";
            if (data.error) {
              var span = document.createElement("span"); span.className = "field-error"; span.textContent = data.error; out.appendChild(span);
            } else if (data.count === null) {
              out.textContent = "Type an expression: the count follows as you type.";
            } else {
              var strong = document.createElement("strong"); strong.textContent = number(data.count);
              out.appendChild(strong); out.appendChild(document.createTextNode(" subscribers"));
            }
          })
          .catch(function () {});
      }, 250);
    });
  }
})();
