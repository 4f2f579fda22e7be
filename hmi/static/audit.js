// Audit lookup: one acquisition's full record by id, and the verification of the hash chain.
"use strict";

async function lookUp(id) {
  const problem = document.getElementById("audit-problem");
  const pre = document.getElementById("audit-record");
  problem.hidden = true;
  if (!id) return;
  try {
    const data = await getJSON("/api/audit/" + encodeURIComponent(id));
    pre.textContent = data.text;
    history.replaceState(null, "", "/audit?id=" + encodeURIComponent(id));
  } catch (err) {
    pre.textContent = "";
    problem.hidden = false;
    problem.textContent = err.message;
  }
}

async function verify() {
  const out = document.getElementById("chain");
  out.textContent = "verifying the chain…";
  try {
    const c = await getJSON("/api/audit/chain");
    out.className = "summary " + (c.ok ? "chain-ok" : "chain-bad");
    out.textContent = c.ok ? `Chain holds: ${c.rows} records, head seq ${c.head_seq} ${c.head_hash.slice(0, 16)}…`
                           : `CHAIN BROKEN at seq ${c.first_bad_seq}: ${c.problem} (${c.rows} records)`;
  } catch (err) { out.className = "summary chain-bad"; out.textContent = err.message; }
}

async function recent() {
  try {
    const rows = await getJSON("/api/audit/recent");
    document.getElementById("audit-recent").replaceChildren(...rows.map((r) => {
      const a = el("a", { href: "#" }, `${r.seq} · ${r.acquisition_id} · ${r.decision} · v${r.model_version}`);
      a.addEventListener("click", (e) => { e.preventDefault(); document.getElementById("audit-id").value = r.acquisition_id; lookUp(r.acquisition_id); });
      return el("li", {}, a);
    }));
  } catch (err) { /* the status line says why */ }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("audit-form").addEventListener("submit", (e) => {
    e.preventDefault(); lookUp(document.getElementById("audit-id").value.trim());
  });
  document.getElementById("verify").addEventListener("click", verify);
  lookUp(document.getElementById("audit-id").value.trim());
  verify();
  recent();
});
