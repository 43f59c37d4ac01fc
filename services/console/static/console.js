// ocsea console: live countdowns to each deadline and inbox updates without reloading.
// No tokens here: the page's requests carry only the HttpOnly session cookie.
"use strict";

(function () {
  const root = document.documentElement;
  const digits = root.dataset.digits || "0123456789";
  const strings = JSON.parse(document.getElementById("console-strings").textContent);
  const settings = JSON.parse(document.getElementById("console-settings").textContent);

  function localise(text) {
    return String(text).replace(/[0-9]/g, (d) => digits[Number(d)]);
  }

  function message(key, params) {
    const template = strings[key] || key;
    return template.replace(/\{([a-z_]+)\}/g, (_, name) => localise(params[name]));
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  // The same spans as views.duration on the server.
  function duration(seconds) {
    const whole = Math.floor(Math.abs(seconds));
    if (whole >= 2 * 86400) {
      return message("countdown.days", { days: Math.floor(whole / 86400) });
    }
    const hours = Math.floor(whole / 3600);
    const rest = whole % 3600;
    return localise(pad(hours) + ":" + pad(Math.floor(rest / 60)) + ":" + pad(rest % 60));
  }

  function tick() {
    const now = Date.now();
    for (const el of document.querySelectorAll(".countdown[data-due]")) {
      const left = (Date.parse(el.dataset.due) - now) / 1000;
      const overdue = left < 0;
      el.textContent = message(overdue ? "countdown.overdue" : "countdown.left", {
        time: duration(left),
      });
      el.classList.toggle("is-overdue", overdue);
      const row = el.closest("tr");
      if (row && overdue) row.classList.add("is-overdue");
    }
  }

  async function refresh(region) {
    // Never pull the table from under someone working in it with the keyboard.
    if (region.contains(document.activeElement) && document.activeElement !== document.body) {
      return;
    }
    let response;
    try {
      response = await fetch(region.dataset.poll, {
        credentials: "same-origin",
        headers: { Accept: "text/html" },
      });
    } catch (error) {
      return; // offline for a moment: the next round tries again
    }
    if (response.status === 401) {
      window.location.reload(); // the session ended: the page shows the sign-in
      return;
    }
    if (!response.ok) return;
    const html = await response.text();
    const before = region.querySelectorAll("tr[data-task-id]").length + "|" + taskIds(region);
    region.innerHTML = html;
    tick();
    const after = region.querySelectorAll("tr[data-task-id]").length + "|" + taskIds(region);
    const status = document.querySelector(".live-status");
    if (status && before !== after) {
      status.textContent = message("js.inbox.changed", {});
    }
  }

  function taskIds(region) {
    return Array.from(region.querySelectorAll("tr[data-task-id]"))
      .map((row) => row.dataset.taskId + row.className)
      .join(",");
  }

  tick();
  window.setInterval(tick, 1000);
  for (const region of document.querySelectorAll("[data-poll]")) {
    window.setInterval(() => refresh(region), settings.poll_ms);
  }
})();
