// The dashboard page: fetch the JSON endpoints, draw the charts and tables, refresh every few seconds.
// Text from the server is only ever set with textContent, never parsed as HTML.
"use strict";

(() => {
  const REFRESH_MS = 5000;
  const $ = (id) => document.getElementById(id);
  const state = { range: "1h", group: "alias", timer: null, open: new Set() };

  const fmt = {
    int: (v) => (v === null || v === undefined ? "–" : Math.round(v).toLocaleString()),
    num: (v) => {
      if (v === null || v === undefined) return "–";
      if (v === 0 || v >= 100) return v.toFixed(0);
      return v >= 10 ? v.toFixed(1) : Number(v.toPrecision(2)).toString();
    },
    ms: (v) => {
      if (v === null || v === undefined) return "–";
      if (v >= 1000) return `${Number((v / 1000).toPrecision(3))} s`;
      return `${v >= 10 || v === 0 ? v.toFixed(0) : v.toFixed(1)} ms`;
    },
    pct: (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)}%`),
    usd: (v) => {
      if (v === null || v === undefined) return "–";
      if (v === 0 || v >= 1) return `$${v.toFixed(2)}`;
      return `$${Number(v.toPrecision(2))}`;
    },
    short: (v) => {
      if (v === null || v === undefined) return "–";
      if (v >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
      if (v >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
      return Number.isInteger(v) || v >= 10 ? v.toFixed(0) : Number(v.toPrecision(2)).toString();
    },
    time: (epoch) => new Date(epoch * 1000).toLocaleTimeString(),
  };

  async function getJSON(path) {
    const response = await fetch(path, { credentials: "same-origin", headers: { accept: "application/json" } });
    if (response.status === 401) {
      window.location.assign("/ui/login");
      throw new Error("signed out");
    }
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return response.json();
  }

  function notice(text) {
    const box = $("notice");
    box.textContent = text || "";
    box.hidden = !text;
  }

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined || text === "" ? "–" : String(text);
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  // --- charts -------------------------------------------------------------------------------------------

  function renderOverview(data) {
    if (!data.log_store) {
      notice(data.notice);
      return;
    }
    notice("");
    const s = data.summary;
    $("t-rate").textContent = fmt.num(s.rate);
    $("t-requests").textContent = fmt.int(s.requests);
    $("t-p50").textContent = fmt.ms(s.p50_ms);
    $("t-p99").textContent = fmt.ms(s.p99_ms);
    $("t-errors").textContent = fmt.pct(s.error_rate);
    $("t-cost").textContent = fmt.usd(s.cost_usd);
    $("t-tokens").textContent = `${fmt.short(s.input_tokens)} / ${fmt.short(s.output_tokens)}`;
    $("t-cache").textContent = fmt.pct(s.cache_hit_rate);

    const ts = data.timestamps;
    const groups = data.groups.length ? data.groups : [{ name: "all", ...data.total }];
    const pick = (key) => groups.map((g) => ({ name: g.name, values: g[key] }));
    Charts.line($("chart-rate"), ts, pick("rate"), fmt.num);
    Charts.line(
      $("chart-latency"),
      ts,
      [
        { name: "p50", values: data.total.p50 },
        { name: "p99", values: data.total.p99 },
      ],
      fmt.ms,
    );
    Charts.line($("chart-errors"), ts, pick("errors"), fmt.short);
    Charts.line($("chart-cost"), ts, pick("cost_usd"), fmt.usd);
    const tokens = groups.map((g) => ({ name: g.name, values: g.input_tokens.map((v, i) => v + g.output_tokens[i]) }));
    Charts.line($("chart-tokens"), ts, tokens, fmt.short);
    Charts.line($("chart-cache"), ts, [{ name: "hit rate", values: data.total.cache_hit_rate }], fmt.pct);
  }

  // --- tables -------------------------------------------------------------------------------------------

  function renderDeployments(data) {
    const body = $("deployments").querySelector("tbody");
    body.textContent = "";
    for (const d of data.data) {
      const row = document.createElement("tr");
      const w = d.window || {};
      cell(row, d.id);
      cell(row, (d.aliases || []).join(", "));
      const state = d.state || "unknown";
      const badge = cell(row, state, `state state-${state}`);
      if (d.reason) badge.title = d.reason;
      cell(row, d.in_flight);
      cell(row, fmt.int(w.requests));
      cell(row, fmt.pct(w.error_rate));
      cell(row, fmt.ms(w.p50_ms));
      cell(row, fmt.ms(w.p99_ms));
      cell(row, w.attempts ? `${w.attempt_failures} / ${w.attempts}` : "–");
      cell(row, d.last_error);
      body.appendChild(row);
    }
  }

  function attemptsRow(item) {
    const row = document.createElement("tr");
    row.className = "attempts";
    const td = document.createElement("td");
    td.colSpan = 11;
    const list = document.createElement("ol");
    for (const a of item.attempts) {
      const li = document.createElement("li");
      const bits = [a.deployment, `status ${a.status ?? "none"}`];
      if (a.error) bits.push(a.error);
      if (a.latency_ms !== null && a.latency_ms !== undefined) bits.push(fmt.ms(a.latency_ms));
      li.textContent = bits.join(" · ");
      list.appendChild(li);
    }
    if (!item.attempts.length) list.textContent = item.cache && item.cache.endsWith("hit") ? "answered from the cache" : "no upstream attempt";
    const extra = [];
    if (item.error_code) extra.push(`error: ${item.error_code}`);
    for (const [name, verdict] of Object.entries(item.guardrails || {})) extra.push(`guardrail ${name}: ${verdict}`);
    if (item.ttft_ms !== null && item.ttft_ms !== undefined) extra.push(`first token after ${fmt.ms(item.ttft_ms)}`);
    if (item.cancelled) extra.push("client left early");
    td.appendChild(list);
    if (extra.length) {
      const p = document.createElement("p");
      p.textContent = extra.join(" · ");
      td.appendChild(p);
    }
    row.appendChild(td);
    return row;
  }

  function renderRequests(data) {
    const body = $("requests").querySelector("tbody");
    body.textContent = "";
    if (!data.log_store) return;
    for (const item of data.data) {
      const row = document.createElement("tr");
      row.className = `request ${item.status >= 400 ? "failed" : ""}`;
      row.dataset.requestId = item.request_id;
      cell(row, fmt.time(item.ts));
      cell(row, item.request_id, "mono");
      cell(row, item.alias);
      cell(row, item.deployment);
      cell(row, item.key_id, "mono");
      cell(row, item.status, item.status >= 400 ? "bad" : "good");
      cell(row, fmt.ms(item.latency_ms));
      cell(row, item.prompt_tokens === null ? "–" : `${item.prompt_tokens} / ${item.completion_tokens}`);
      cell(row, item.cost_usd === null ? "–" : fmt.usd(item.cost_usd));
      cell(row, item.cache);
      cell(row, item.attempts.length);
      row.addEventListener("click", () => {
        if (state.open.has(item.request_id)) state.open.delete(item.request_id);
        else state.open.add(item.request_id);
        const next = row.nextElementSibling;
        if (next && next.classList.contains("attempts")) next.remove();
        else row.after(attemptsRow(item));
      });
      body.appendChild(row);
      if (state.open.has(item.request_id)) body.appendChild(attemptsRow(item));
    }
  }

  function renderKeys(data) {
    const note = $("keys-note");
    const text = data.notice || (data.data.length ? "" : "No virtual keys yet: create them with POST /admin/keys.");
    note.textContent = text;
    note.hidden = !text;
    const body = $("keys").querySelector("tbody");
    body.textContent = "";
    for (const key of data.data) {
      const row = document.createElement("tr");
      const usage = key.usage || {};
      cell(row, key.name);
      cell(row, key.id, "mono");
      cell(row, key.team);
      cell(row, key.known === false ? "" : key.models ? key.models.join(", ") : "all");
      const limits = [];
      if (key.rpm_limit) limits.push(`${key.rpm_limit} rpm`);
      if (key.tpm_limit) limits.push(`${key.tpm_limit} tpm`);
      if (key.budget) limits.push(`$${key.budget.amount_usd}/${key.budget.period}`);
      cell(row, limits.join(", "));
      if (key.known === false) cell(row, "not in the key store", "muted");
      else cell(row, key.revoked ? "revoked" : "active", key.revoked ? "bad" : "good");
      cell(row, fmt.int(usage.requests));
      cell(row, usage.requests ? `${fmt.short(usage.input_tokens)} / ${fmt.short(usage.output_tokens)}` : "–");
      cell(row, usage.requests ? fmt.usd(usage.cost_usd) : "–");
      body.appendChild(row);
    }
  }

  // --- loading ------------------------------------------------------------------------------------------

  function requestQuery() {
    const params = new URLSearchParams({ limit: "50" });
    if ($("f-alias").value) params.set("alias", $("f-alias").value);
    if ($("f-key").value.trim()) params.set("key_id", $("f-key").value.trim());
    if ($("f-errors").checked) params.set("errors", "1");
    return params.toString();
  }

  async function refresh() {
    const q = `range=${encodeURIComponent(state.range)}`;
    const jobs = [
      getJSON(`/ui/api/overview?${q}&group=${encodeURIComponent(state.group)}`).then(renderOverview),
      getJSON("/ui/api/deployments").then(renderDeployments),
      getJSON(`/ui/api/requests?${requestQuery()}`).then(renderRequests),
      getJSON(`/ui/api/keys?${q}`).then(renderKeys),
    ];
    const results = await Promise.allSettled(jobs);
    const failed = results.find((r) => r.status === "rejected");
    if (failed && failed.reason.message !== "signed out") notice(`Could not refresh: ${failed.reason.message}`);
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.loaded = "true";
  }

  function schedule() {
    clearInterval(state.timer);
    state.timer = null;
    if ($("live").checked) {
      state.timer = setInterval(() => {
        if (!document.hidden) refresh();
      }, REFRESH_MS);
    }
  }

  async function start() {
    const meta = await getJSON("/ui/api/meta");
    if (meta.open) $("logout").hidden = true;
    const select = $("f-alias");
    for (const alias of meta.aliases) {
      const option = document.createElement("option");
      option.value = alias;
      option.textContent = alias;
      select.appendChild(option);
    }
    $("range").addEventListener("change", (e) => {
      state.range = e.target.value;
      refresh();
    });
    $("group").addEventListener("change", (e) => {
      state.group = e.target.value;
      refresh();
    });
    for (const id of ["f-alias", "f-errors"]) $(id).addEventListener("change", refresh);
    $("f-key").addEventListener("change", refresh);
    $("live").addEventListener("change", schedule);
    window.addEventListener("resize", () => refresh());
    await refresh();
    schedule();
  }

  start().catch((error) => notice(`The dashboard could not start: ${error.message}`));
})();
