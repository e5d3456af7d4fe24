// Live refresh for the dashboard: every few seconds, fetch this page's live
// part again (?partial=1: the same server-rendered, escaped HTML) and swap it
// in. Without JavaScript the pages are complete; reload to refresh. The
// actions' forms are plain HTML forms: they need no script.
"use strict";
(function () {
  const live = document.getElementById("live");
  const toggle = document.getElementById("live-toggle");
  if (!live || !toggle) return;
  const enabled = toggle.querySelector("input");
  const stamp = document.getElementById("live-stamp");
  toggle.hidden = false;
  let busy = false;

  // Typing into an action's field (a retry's stage, a cancel's reason): keep it.
  function editing() {
    const focused = document.activeElement;
    return focused !== null && live.contains(focused) && focused.matches("input, select, textarea");
  }

  async function refresh() {
    if (busy || !enabled.checked || document.hidden || editing()) return;
    busy = true;
    const url = new URL(window.location.href);
    url.searchParams.set("partial", "1");
    try {
      const response = await fetch(url, { headers: { Accept: "text/html" } });
      if (response.ok) {
        live.innerHTML = await response.text();
        stamp.textContent = "· " + new Date().toLocaleTimeString();
      }
    } catch (error) {
      stamp.textContent = "· server unreachable";
    } finally {
      busy = false;
    }
  }

  setInterval(refresh, Number(live.dataset.refresh || 5) * 1000);
})();
