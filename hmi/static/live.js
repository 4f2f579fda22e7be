// Live line: the last acquisitions as they come, the current strip's grid, counts and rates.
"use strict";

HMI.rows = 50;
const MAX_ROWS = 50;

function verdictRow(v) {
  const tr = el("tr", { class: v.decision === "REJECT" ? "reject" : "accept", "data-acquisition": v.acquisition_id });
  const id = v.decision === "REJECT"
    ? el("a", { href: "/acquisitions/" + encodeURIComponent(v.acquisition_id), class: "reject-link" }, v.acquisition_id)
    : v.acquisition_id;
  tr.append(el("td", {}, id), el("td", {}, v.product_id), el("td", { class: "num" }, v.run_index),
            el("td", { class: "decision" }, v.decision), el("td", { class: "num" }, fmt(v.strip_score, 4)),
            el("td", { class: "num" }, signed(v.worst_margin, 4)), el("td", { class: "num" }, v.model_version),
            el("td", { class: "num" }, fmt(v.server_ms, 1)), el("td", { class: "num" }, v.over_patches));
  return tr;
}

function drawGrid(grid) {
  const body = document.querySelector("#strip-grid tbody");
  if (!grid) return;
  document.getElementById("grid-id").textContent = grid.acquisition_id + " · " + grid.decision;
  const head = el("tr", {}, el("th", {}, ""));
  for (let vial = 0; vial < grid.vials; vial++) head.append(el("th", {}, "vial " + (vial + 1)));
  const rows = [head];
  grid.cells.forEach((cells, r) => {
    const tr = el("tr", {}, el("th", {}, grid.regions[r]));
    for (const c of cells) {
      tr.append(c === null ? el("td", { class: "cell" }, "–")
        : el("td", { class: "cell " + c.state, title: c.region + " vial " + (c.vial + 1) + ", frame " + c.frame +
                     ": score " + c.score.toFixed(4) + " / threshold " + c.threshold.toFixed(4) },
             signed(c.margin, 3)));
    }
    rows.push(tr);
  });
  body.replaceChildren(...rows);
}

HMI.on("verdict", (v) => {
  const body = document.querySelector("#live-table tbody");
  if (body.querySelector(`tr[data-acquisition="${CSS.escape(v.acquisition_id)}"]`)) return;  // never twice
  body.prepend(verdictRow(v));
  while (body.rows.length > MAX_ROWS) body.deleteRow(body.rows.length - 1);
});

HMI.on("summary", (s) => {
  document.getElementById("kpi-received").textContent = s.received;
  document.getElementById("kpi-accepts").textContent = s.accepts;
  document.getElementById("kpi-rejects").textContent = s.rejects;
  document.getElementById("kpi-reject-rate").textContent = pct(s.rates.reject_rate);
  document.getElementById("kpi-throughput").textContent =
    s.rates.per_minute === null ? "–" : s.rates.per_minute.toFixed(1) + " /min";
  document.getElementById("kpi-model").textContent = s.model_version === null ? "–" : "v" + s.model_version;
  drawGrid(s.grid);
});
