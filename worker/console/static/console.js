// The operator console's live parts: the overview refreshes itself, a running batch shows its
// progress. Plain JavaScript, no library; the pages work (by reloading) without it.
"use strict";

function refreshOverview(box) {
  const every = Number(box.dataset.every || 5000);
  const tick = async () => {
    try {
      const answer = await fetch(box.dataset.refresh, { credentials: "same-origin" });
      if (answer.ok && !answer.redirected) {
        box.innerHTML = await answer.text(); // server-rendered, escaped by the template
      }
    } catch (_) {
      // a missed refresh is retried on the next tick
    }
    setTimeout(tick, every);
  };
  setTimeout(tick, every);
}

function followBatch(box) {
  const bar = box.querySelector("progress");
  const field = (name) => box.querySelector(`[data-field="${name}"]`);
  const tick = async () => {
    let state = null;
    try {
      const answer = await fetch(box.dataset.progress, { credentials: "same-origin" });
      if (answer.ok) state = await answer.json();
    } catch (_) {
      state = null;
    }
    if (state) {
      for (const name of ["phase", "done", "total", "created", "duplicate", "failed", "sent"]) {
        const element = field(name);
        if (element && state[name] !== undefined) element.textContent = String(state[name]);
      }
      bar.max = Math.max(state.total || 0, 1);
      bar.value = state.done || 0;
      bar.textContent = `${state.done} / ${state.total}`;
      if (state.error) {
        const error = field("error");
        error.textContent = state.error;
        error.hidden = false;
      }
      if (state.finished) {
        window.location.reload(); // the report and the re-run come with the finished page
        return;
      }
    }
    setTimeout(tick, 500);
  };
  tick();
}

document.addEventListener("DOMContentLoaded", () => {
  const overview = document.querySelector("[data-refresh]");
  if (overview) refreshOverview(overview);
  const batch = document.querySelector("[data-progress]");
  if (batch && batch.dataset.finished !== "true") followBatch(batch);
});
