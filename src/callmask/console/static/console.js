// The callmask console's own script (served from /console/static; the CSP allows no
// inline script). It draws the dashboard's charts with uPlot from
// /console/dashboard/data, and a pool's from /console/pools/<sid>/data, and redraws
// them every 15 seconds. Everything else on the
// pages is plain HTML forms and htmx attributes.
"use strict";

(function () {
  const REFRESH_MS = 15000;

  function chartWidth(element) {
    return Math.max(320, element.clientWidth - 20);
  }

  function draw(element, title, data, series) {
    element.textContent = "";
    const options = {
      title: title,
      width: chartWidth(element),
      height: 200,
      scales: { x: { time: true } },
      series: [{}].concat(series),
      axes: [{}, { size: 50 }],
    };
    return new window.uPlot(options, data, element);
  }

  async function refresh(callsElement, pddElement) {
    const response = await fetch(callsElement.dataset.source, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (!response.ok) {
      callsElement.textContent = "chart data unavailable (" + response.status + ")";
      return;
    }
    const body = await response.json();
    draw(callsElement, "calls per minute", [body.minutes, body.calls, body.answered], [
      { label: "calls", stroke: "#2f6fdf", width: 2, fill: "rgba(47,111,223,0.08)" },
      { label: "answered", stroke: "#1e8a4c", width: 2 },
    ]);
    if (pddElement) {
      draw(pddElement, "post-dial delay (ms)", [body.minutes, body.pdd_ms], [
        { label: "mean INVITE to ringing", stroke: "#b7791f", width: 2, spanGaps: false },
      ]);
    }
    document.body.dataset.chartsDrawn = "1";
  }

  async function drawPool(poolElement) {
    const response = await fetch(poolElement.dataset.source, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (!response.ok) {
      poolElement.textContent = "chart data unavailable (" + response.status + ")";
      return;
    }
    const body = await response.json();
    draw(poolElement, "pool numbers", [body.times, body.in_use, body.free], [
      { label: "in use", stroke: "#c53030", width: 2, fill: "rgba(197,48,48,0.08)" },
      { label: "free", stroke: "#1e8a4c", width: 2 },
    ]);
    document.body.dataset.chartsDrawn = "1";
  }

  function start() {
    const poolElement = document.getElementById("chart-pool");
    if (poolElement && window.uPlot) {
      drawPool(poolElement);
      window.setInterval(function () { drawPool(poolElement); }, REFRESH_MS);
    }
    const callsElement = document.getElementById("chart-calls");
    if (!callsElement || !window.uPlot) {
      return;
    }
    const pddElement = document.getElementById("chart-pdd");
    refresh(callsElement, pddElement);
    window.setInterval(function () { refresh(callsElement, pddElement); }, REFRESH_MS);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
