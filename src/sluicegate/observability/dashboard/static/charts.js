// Small SVG line charts for the dashboard: time on x, one line per series, a legend and a hover read-out.
// No dependencies, so nothing to fetch, bundle or keep patched.
"use strict";

const Charts = (() => {
  const SVG = "http://www.w3.org/2000/svg";
  const PALETTE = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777", "#64748b"];
  const HEIGHT = 190;
  const PAD = { right: 14, top: 10, bottom: 24 };

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    if (parent) parent.appendChild(node);
    return node;
  }

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 2.5, 5, 10]) {
      if (step * power >= value) return step * power;
    }
    return 10 * power;
  }

  function timeLabel(seconds, span) {
    const date = new Date(seconds * 1000);
    if (span > 2 * 86400) return date.toLocaleDateString([], { month: "short", day: "numeric" });
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  // series: [{name, values: [number|null]}]; format(value) -> text
  function line(container, timestamps, series, format) {
    container.textContent = "";
    const width = Math.max(240, container.clientWidth || 480);
    const svg = el("svg", { width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`, role: "img" }, container);
    const plotH = HEIGHT - PAD.top - PAD.bottom;
    const count = timestamps.length;
    let max = 0;
    let points = 0;
    for (const s of series) {
      for (const v of s.values) {
        if (v !== null && v !== undefined) {
          max = Math.max(max, v);
          if (v > 0) points += 1;
        }
      }
    }
    container.dataset.points = String(points);
    const top = niceMax(max);
    const labels = [0, 1, 2, 3, 4].map((t) => format((top * t) / 4));
    // room on the left for the widest y label (about 6 px per character at 10 px)
    const left = 12 + 6 * Math.max(...labels.map((label) => label.length));
    const plotW = width - left - PAD.right;
    const x = (i) => left + (count <= 1 ? plotW / 2 : (i * plotW) / (count - 1));
    const y = (v) => PAD.top + plotH - (v / top) * plotH;

    for (let t = 0; t <= 4; t++) {
      const value = (top * t) / 4;
      el("line", { x1: left, x2: width - PAD.right, y1: y(value), y2: y(value), class: "grid" }, svg);
      el("text", { x: left - 6, y: y(value) + 4, class: "axis", "text-anchor": "end" }, svg).textContent = labels[t];
    }
    const span = count > 1 ? timestamps[count - 1] - timestamps[0] : 0;
    const ticks = Math.min(5, count);
    for (let t = 0; t < ticks; t++) {
      const i = Math.round((t * (count - 1)) / Math.max(1, ticks - 1));
      const anchor = t === 0 ? "start" : t === ticks - 1 ? "end" : "middle";
      el("text", { x: x(i), y: HEIGHT - 6, class: "axis", "text-anchor": anchor }, svg).textContent = timeLabel(
        timestamps[i],
        span,
      );
    }

    series.forEach((s, index) => {
      const color = PALETTE[index % PALETTE.length];
      const present = (i) => s.values[i] !== null && s.values[i] !== undefined;
      let d = "";
      s.values.forEach((v, i) => {
        if (!present(i)) return;
        d += `${present(i - 1) ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
        // a value with no neighbour would be an invisible zero-length line: mark it with a dot
        if (!present(i - 1) && !present(i + 1)) {
          el("circle", { cx: x(i), cy: y(v), r: 2.5, fill: color, class: "dot" }, svg);
        }
      });
      if (d) el("path", { d, stroke: color, class: "series", "data-series": s.name }, svg);
    });

    const legend = document.createElement("div");
    legend.className = "legend";
    series.forEach((s, index) => {
      const item = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.className = `swatch c${index % PALETTE.length}`;
      item.append(swatch, document.createTextNode(s.name));
      legend.appendChild(item);
    });
    container.appendChild(legend);
    hover(container, svg, timestamps, series, x, format, plotH);
  }

  function hover(container, svg, timestamps, series, x, format, plotH) {
    const cursor = el("line", { y1: PAD.top, y2: PAD.top + plotH, class: "cursor", visibility: "hidden" }, svg);
    const tip = document.createElement("div");
    tip.className = "tip";
    tip.hidden = true;
    container.appendChild(tip);
    svg.addEventListener("mousemove", (event) => {
      const box = svg.getBoundingClientRect();
      const px = event.clientX - box.left;
      let best = 0;
      for (let i = 0; i < timestamps.length; i++) {
        if (Math.abs(x(i) - px) < Math.abs(x(best) - px)) best = i;
      }
      cursor.setAttribute("x1", x(best));
      cursor.setAttribute("x2", x(best));
      cursor.setAttribute("visibility", "visible");
      tip.textContent = "";
      const title = document.createElement("strong");
      title.textContent = new Date(timestamps[best] * 1000).toLocaleString();
      tip.appendChild(title);
      for (const s of series) {
        const row = document.createElement("div");
        const v = s.values[best];
        row.textContent = `${s.name}: ${v === null || v === undefined ? "–" : format(v)}`;
        tip.appendChild(row);
      }
      tip.hidden = false;
    });
    svg.addEventListener("mouseleave", () => {
      cursor.setAttribute("visibility", "hidden");
      tip.hidden = true;
    });
  }

  return { line };
})();
