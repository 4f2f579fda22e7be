// Model: the serving version, its thresholds, its published report and ROC, when it went into service.
"use strict";

let shownVersion = null;

async function loadModel() {
  let m;
  try { m = await getJSON("/api/model"); } catch (err) { return; }
  if (m.shown === shownVersion && m.serving === shownVersion) return;
  shownVersion = m.shown;
  document.getElementById("model-version").textContent = m.shown === null ? "" : "v" + m.shown;
  const first = m.first_verdict_unix_ms ? new Date(m.first_verdict_unix_ms).toISOString().replace(".000", "") : null;
  document.getElementById("model-summary").textContent = m.shown === null ? "no version published" :
    (m.serving === null ? `no verdict received yet: showing the newest published version, v${m.shown}. `
                        : `serving v${m.serving} (the version named by the latest verdict). `) +
    `Profile ${m.profile || "?"}, patch ${m.patch_size || "?"} px, created ${m.created_utc || "?"}; ` +
    `in service here since ${first || "— (no verdict of it in the audit store)"}; ` +
    `published versions: ${m.published.join(", ") || "none"}.`;
  const problems = (m.problems || []).concat(m.audit_problem ? [m.audit_problem] : []);
  const box = document.getElementById("model-problems");
  box.hidden = problems.length === 0;
  box.textContent = problems.join("; ");
  const sets = Object.keys(m.thresholds || {});
  const regions = sets.length ? Object.keys(m.thresholds[sets[0]]) : [];
  document.querySelector("#thresholds thead").replaceChildren(
    el("tr", {}, el("th", {}, "threshold set"), ...regions.map((r) => el("th", {}, r)), el("th", {}, "")));
  document.querySelector("#thresholds tbody").replaceChildren(...sets.map((name) => el("tr",
    { class: name === m.serving_set ? "serving" : "" }, el("td", {}, name),
    ...regions.map((r) => el("td", { class: "num" }, m.thresholds[name][r].toFixed(6))),
    el("td", {}, name === m.serving_set ? `served (run policy ${m.run_policy[0]} of ${m.run_policy[1]})` : ""))));
  // The report is the trainer's own Markdown, rendered by the HMI's server.
  document.getElementById("report").innerHTML = m.report_html || "<p>no report published</p>";
  const fig = document.getElementById("roc-figure");
  fig.hidden = !m.roc_url || (m.report_html || "").includes("roc.png");  // the report shows it already
  if (m.roc_url) document.getElementById("roc").src = m.roc_url;
}

HMI.on("summary", (s) => { if (s.model_version !== null && s.model_version !== shownVersion) loadModel(); });
document.addEventListener("DOMContentLoaded", loadModel);
