// The clrk console's only script: it keeps live sections of a page up to date by polling
// the console's data endpoints. Log lines are added as text, never as HTML; row fragments
// come from the server already escaped.
"use strict";

(function () {
  const MAX_LOG_LINES = 500;

  function stopped(el, why) {
    const state = el.parentElement && el.parentElement.querySelector(".live-state");
    if (state) state.textContent = why;
  }

  function followLogs(el) {
    let after = null;
    const src = el.dataset.src;
    async function poll() {
      let response;
      try {
        response = await fetch(after === null ? src : src + "?after=" + after, {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
        });
      } catch (e) {
        return setTimeout(poll, 3000);
      }
      if (response.status === 401) return stopped(el, "signed out: reload to sign in again");
      if (!response.ok) return setTimeout(poll, 3000);
      const page = await response.json();
      const empty = el.querySelector(".empty");
      for (const line of page.items) {
        if (empty) empty.remove();
        const row = document.createElement("div");
        row.className = "line " + line.stream;
        row.dataset.execution = line.executionId || "";
        row.textContent = line.time.substring(11, 19) + " " + line.stream + " " + line.line;
        el.appendChild(row);
        after = line.seq;
      }
      if (after === null) after = page.after;
      while (el.childElementCount > MAX_LOG_LINES) el.firstElementChild.remove();
      if (page.items.length) el.scrollTop = el.scrollHeight;
      setTimeout(poll, page.items.length ? 200 : 1000);
    }
    poll();
  }

  function refreshRows(el) {
    const src = el.dataset.src;
    async function poll() {
      try {
        const response = await fetch(src, { credentials: "same-origin" });
        if (response.status === 401) return stopped(el.closest("table"), "signed out");
        if (response.ok) el.innerHTML = await response.text();
      } catch (e) {
        // The next poll tries again.
      }
      setTimeout(poll, 2000);
    }
    setTimeout(poll, 2000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live-logs]").forEach(followLogs);
    document.querySelectorAll("[data-live-rows]").forEach(refreshRows);
  });
})();
