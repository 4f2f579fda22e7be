// Shared by every page: the event stream, the stack status line, small DOM helpers.
// Text from the stack (ids come from the camera) is always set with textContent, never as HTML.
"use strict";

const HMI = {
  listeners: { verdict: [], summary: [] },
  on(kind, fn) { this.listeners[kind].push(fn); },
  rows: 0,               // verdict rows the page wants in its first burst (live page: 50)
  lastSummaryAt: 0,
};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function fmt(value, digits) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") return Number.isFinite(value) ? value.toFixed(digits) : String(value);
  return String(value);
}

function signed(value, digits) {
  if (value === null || value === undefined) return "–";
  return (value > 0 ? "+" : "") + value.toFixed(digits);
}

function pct(value) { return value === null || value === undefined ? "–" : (100 * value).toFixed(1) + " %"; }

function since(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 90 ? s + " s" : Math.round(s / 60) + " min";
}

function setStatus(summary) {
  const status = document.getElementById("stack-status");
  const banner = document.getElementById("stack-down");
  const stack = summary.stack;
  const problems = [];
  if (!stack.connected) problems.push("Stack DOWN for " + since(stack.since_unix_ms) + ": " + stack.reason +
                                      ". Verdicts shown are the last received; nothing new until it is back.");
  if (!summary.audit.ok) problems.push("Audit store not readable: " + summary.audit.problem);
  status.className = "status " + (stack.connected ? (summary.audit.ok ? "up" : "degraded") : "down");
  status.textContent = stack.connected ? "stack connected · " + summary.received + " verdicts" : "STACK DOWN";
  banner.hidden = problems.length === 0;
  banner.textContent = problems.join("  ");
}

function hmiDown() {
  const status = document.getElementById("stack-status");
  const banner = document.getElementById("stack-down");
  status.className = "status down";
  status.textContent = "HMI UNREACHABLE";
  banner.hidden = false;
  banner.textContent = "The HMI server does not answer (stopped, or the network). Retrying every second; " +
                       "what is on screen is the last known state.";
}

function connectEvents() {
  const source = new EventSource("/events?rows=" + HMI.rows);
  source.addEventListener("verdict", (e) => {
    const row = JSON.parse(e.data);
    for (const fn of HMI.listeners.verdict) fn(row);
  });
  source.addEventListener("summary", (e) => {
    const summary = JSON.parse(e.data);
    HMI.lastSummaryAt = Date.now();
    setStatus(summary);
    for (const fn of HMI.listeners.summary) fn(summary);
  });
  source.onerror = () => { if (source.readyState !== EventSource.OPEN) hmiDown(); };
}

// A stream that stays silent (a proxy that buffers, a hung server) is as bad as a closed one.
setInterval(() => { if (HMI.lastSummaryAt && Date.now() - HMI.lastSummaryAt > 5000) hmiDown(); }, 1000);

async function getJSON(url) {
  const reply = await fetch(url, { cache: "no-store" });
  const body = await reply.json().catch(() => ({ problem: "HTTP " + reply.status }));
  if (!reply.ok) throw new Error(body.problem || ("HTTP " + reply.status));
  return body;
}

document.addEventListener("DOMContentLoaded", () => {
  for (const a of document.querySelectorAll("nav a")) {
    if (a.getAttribute("href") === location.pathname) a.classList.add("active");
  }
  connectEvents();
});
