// Live refresh for the dashboard: every few seconds, fetch this page's live
// part again (?partial=1: the same server-rendered, escaped HTML) and swap it
// in. Without JavaScript the pages are complete; reload to refresh.
"use strict";
(function () {
  const live = document.getElementById("live");
  const toggle = document.getElementById("live-toggle");
  if (!live || !toggle) return;
  const enabled = toggle.querySelector("input");
  const stamp = document.getElementById("live-stamp");
  toggle.hidden = false;
  let busy = false;

  async function refresh() {
    if (busy || !enabled.checked || document.hidden) return;
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
