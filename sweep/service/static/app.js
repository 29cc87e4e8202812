// sweep's pages: the studies list with the submit form, and a study's live view. Plain JavaScript, no build.
// Everything from the server is put in the page as text (textContent), never as HTML: names come from users.
"use strict";

(function () {
  const body = document.body;
  const REFRESH_MS = Math.max(1, Number(body.dataset.refreshSeconds) || 3) * 1000;
  const LIVE = new Set(["queued", "running"]);
  // A marker for this page load: a test (or a curious user) can see the page was updated, not reloaded.
  window.sweepPageLoad = window.sweepPageLoad || Math.random().toString(36).slice(2);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function fmt(value, digits) {
    if (value === null || value === undefined) return "–";
    if (typeof value !== "number") return String(value);
    if (Number.isInteger(value)) return String(value);
    const abs = Math.abs(value);
    return abs !== 0 && (abs < 1e-3 || abs >= 1e5) ? value.toExponential(2) : value.toFixed(digits === undefined ? 4 : digits);
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 60) return seconds.toFixed(1) + " s";
    const m = Math.floor(seconds / 60), s = Math.round(seconds % 60);
    return m < 60 ? `${m} min ${s} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
  }

  // a study's workers, those whose process is gone (killed; their trials wait for the heartbeat) marked
  function workerNames(s) {
    const gone = new Set(s.gone_workers || []);
    return s.workers.map((w) => (gone.has(w) ? w + " (process gone)" : w)).join(", ");
  }

  function when(unix) {
    return unix ? new Date(unix * 1000).toLocaleString() : "–";
  }

  function params(obj) {
    const parts = Object.entries(obj || {}).map(([k, v]) => `${k}=${fmt(v, 4)}`);
    return parts.length ? parts.join(", ") : "–";
  }

  function studyUrl(name) {
    return "/studies/" + encodeURIComponent(name);
  }

  function apiUrl(name, rest) {
    return "/api/studies/" + encodeURIComponent(name) + (rest || "");
  }

  // The lines of an error answer: every problem (field: message), else its detail, else the status.
  async function errorLines(response) {
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      return [`${response.status} ${response.statusText || "error"}`];
    }
    if (data && Array.isArray(data.errors) && data.errors.length) {
      return data.errors.map((e) => (e.field ? `${e.field}: ${e.message}` : String(e.message)));
    }
    if (data && data.detail) return String(data.detail).split("\n");
    return [`${response.status} ${response.statusText || "error"}`];
  }

  async function getJson(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
    if (response.status === 401) {
      window.location.assign("/login");
      throw new Error("not logged in");
    }
    if (!response.ok) throw new Error((await errorLines(response)).join("\n"));
    return response.json();
  }

  function showError(node, message) {
    node.textContent = message || "";
    node.hidden = !message;
  }

  function stamp() {
    const node = document.getElementById("updated");
    if (node) node.textContent = "updated " + new Date().toLocaleTimeString();
  }

  function badge(state) {
    return el("span", { class: "badge state-" + state }, state);
  }

  function bar(finished, budget) {
    const share = budget ? Math.min(1, finished / budget) : 0;
    const fill = el("div", { class: "fill" });
    fill.style.width = (share * 100).toFixed(1) + "%";
    return el("div", { class: "bar", title: `${finished} of ${budget} trials finished` }, fill);
  }

  function best(summary) {
    if (summary.best_value === null || summary.best_value === undefined) return "–";
    return `${fmt(summary.best_value)} ${summary.metric_label || summary.metric || ""}`.trim();
  }

  // --- the studies list and the submit form -----------------------------------------------------------------

  function renderStudies(studies) {
    const tbody = document.querySelector("#studies tbody");
    const rows = studies.map((s) =>
      el("tr", { "data-study": s.name },
        el("td", {}, el("a", { href: studyUrl(s.name) }, s.name)),
        el("td", {}, badge(s.state)),
        el("td", { class: "progress-cell" }, bar(s.finished, s.budget), el("span", { class: "progress-text" }, `${s.finished}/${s.budget}`)),
        el("td", {}, best(s)),
        el("td", {}, String(s.running)),
        el("td", { class: "workers" }, s.workers.length ? workerNames(s) : "–"),
        el("td", {}, String(s.priority)),
        el("td", {}, when(s.submitted_at)),
      ));
    if (!rows.length) rows.push(el("tr", { class: "empty" }, el("td", { colspan: 8 }, "no study yet: submit one below, or run `sweep run SPEC` against this store")));
    tbody.replaceChildren(...rows);
  }

  function indexPage() {
    const error = document.getElementById("list-error");
    // While a submission creates its study the list waits: the new study is not ready to be read yet, and the
    // page is about to move to it anyway.
    let submitting = false;
    let busy = false;
    async function refresh() {
      if (submitting || busy) return;
      busy = true;
      try {
        renderStudies(await getJson("/api/studies"));
        showError(error, "");
        stamp();
      } catch (e) {
        showError(error, "could not read the studies: " + e.message);
      } finally {
        busy = false;
      }
    }
    refresh();
    setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);

    const form = document.getElementById("submit-form");
    const status = document.getElementById("submit-status");
    const errors = document.getElementById("submit-errors");
    const button = document.getElementById("submit-button");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = new FormData(form);
      for (const [key, value] of Array.from(data.entries())) {
        const empty = value instanceof File ? !value.name && !value.size : !String(value).trim();
        if (empty) data.delete(key);
      }
      errors.replaceChildren();
      errors.hidden = true;
      button.disabled = true;
      submitting = true;
      status.textContent = "submitting… (the data is checked and prepared before the study is created)";
      try {
        const response = await fetch("/api/studies", { method: "POST", body: data });
        if (response.status === 401) {
          window.location.assign("/login");
          return;
        }
        if (response.ok) {
          const created = await response.json();
          status.textContent = "created " + created.name;
          window.location.assign(studyUrl(created.name));
          return;
        }
        const lines = await errorLines(response);
        errors.replaceChildren(...lines.map((line) => el("li", {}, line)));
        errors.hidden = false;
        status.textContent = `not submitted (${response.status}):`;
      } catch (e) {
        errors.replaceChildren(el("li", {}, "could not reach the server: " + e.message));
        errors.hidden = false;
        status.textContent = "";
      } finally {
        button.disabled = false;
        submitting = false;
      }
    });
  }

  // --- a study's live view --------------------------------------------------------------------------------------

  const PLOT_CONFIG = { responsive: true, displaylogo: false };

  function draw(id, figure, emptyId, emptyText) {
    const div = document.getElementById(id);
    const empty = emptyId ? document.getElementById(emptyId) : null;
    if (!figure) {
      if (div.dataset.drawn) {
        Plotly.purge(div);
        delete div.dataset.drawn;
      }
      div.hidden = true;
      if (empty) {
        if (emptyText !== undefined) empty.textContent = emptyText || "";
        empty.hidden = !empty.textContent;
      }
      return;
    }
    div.hidden = false;
    if (empty) empty.hidden = true;
    // react updates the figure in place (no flicker); the user's zoom stays while the data grows
    const layout = Object.assign({}, figure.layout || {}, { uirevision: "keep", autosize: true });
    delete layout.width;
    Plotly.react(div, figure.data || [], layout, PLOT_CONFIG);
    div.dataset.drawn = "1";
  }

  function renderTrials(name, trials, bestNumber) {
    const tbody = document.querySelector("#trials tbody");
    const rows = trials.slice().sort((a, b) => b.number - a.number).map((t) => {
      const exportCell = t.state === "complete"
        ? el("a", { href: apiUrl(name, "/export?trial=" + t.number), download: true, class: "export-trial" }, "export")
        : null;
      return el("tr", { class: t.number === bestNumber ? "best" : null, "data-trial": t.number },
        el("td", {}, String(t.number)),
        el("td", { title: t.failure || null }, badge(t.state)),
        el("td", {}, fmt(t.value)),
        el("td", { class: "params" }, params(t.params)),
        el("td", {}, t.best_epoch === null || t.best_epoch === undefined ? "–" : String(t.best_epoch)),
        el("td", {}, duration(t.seconds)),
        el("td", { class: "workers" }, t.worker ? t.worker + (t.worker_gone ? " (process gone)" : "") : "–"),
        el("td", {}, exportCell),
      );
    });
    if (!rows.length) rows.push(el("tr", { class: "empty" }, el("td", { colspan: 8 }, "no trial yet: a worker (`sweep worker --storage URL`) takes queued studies")));
    tbody.replaceChildren(...rows);
  }

  // The data report the study was created with (it never changes): sizes, warnings, the class counts.
  function renderData(report) {
    if (!report || typeof report !== "object" || !Object.keys(report).length) return false;
    const parts = [];
    if (typeof report.num_train === "number") parts.push(`${report.num_train} train`);
    if (typeof report.num_validation === "number") parts.push(`${report.num_validation} validation examples`);
    const labels = Array.isArray(report.label_names) ? report.label_names : [];
    if (labels.length) parts.push(`${labels.length} labels`);
    if (typeof report.max_length === "number") parts.push(`max_length ${report.max_length}`);
    document.getElementById("data-summary").textContent = parts.join(", ") || "see the full report";
    const warnings = Array.isArray(report.warnings) ? report.warnings : [];
    const list = document.getElementById("data-warnings");
    list.replaceChildren(...warnings.map((w) => el("li", {}, String(w))));
    list.hidden = !warnings.length;
    const dist = report.class_distribution || {};
    const train = dist.train && typeof dist.train === "object" ? dist.train : null;
    const table = document.getElementById("classes");
    if (train) {
      const val = dist.validation && typeof dist.validation === "object" ? dist.validation : {};
      table.querySelector("tbody").replaceChildren(...Object.keys(train).map((label) =>
        el("tr", {}, el("td", {}, label), el("td", {}, fmt(train[label])), el("td", {}, fmt(val[label])))));
    }
    table.hidden = !train;
    document.getElementById("data").hidden = false;
    return true;
  }

  function studyPage() {
    const name = body.dataset.study;
    const stateNode = document.getElementById("state");
    const stopButton = document.getElementById("stop");
    const resumeButton = document.getElementById("resume");
    const moreForm = document.getElementById("more");
    const moreTrials = document.getElementById("more-trials");
    const exportLink = document.getElementById("export");
    const actionError = document.getElementById("action-error");
    // A finished, stopped or failed study is still asked about, slowly: a colleague may continue, stop or resume it
    // from another page or the command line (the page showed "finished" with Stop greyed out while trials ran).
    const IDLE_MS = Math.max(5 * REFRESH_MS, Math.min(15000, 20 * REFRESH_MS));
    let timer = null;
    let period = null;
    let drawnFor = null;
    let dataShown = false;
    let actionMessage = ""; // what the last button's request was refused with: kept until the next one

    function signature(detail) {
      return JSON.stringify(detail.trials.map((t) => [t.number, t.state, Object.keys(t.intermediate_values || {}).length]));
    }

    function render(detail) {
      const s = detail.study;
      stateNode.className = "badge state-" + s.state;
      stateNode.textContent = s.state;
      document.getElementById("progress").textContent = `${s.finished}/${s.budget} trials finished` + (s.failed ? `, ${s.failed} failed` : "");
      document.getElementById("progress-fill").style.width = (s.budget ? Math.min(100, (100 * s.finished) / s.budget) : 0).toFixed(1) + "%";
      const b = detail.best_trial;
      document.getElementById("best").textContent = b ? `${best(s)} (trial ${b.number}, best epoch ${b.best_epoch ?? "–"})` : "–";
      document.getElementById("best-params").textContent = b ? params(b.params) : "–";
      document.getElementById("running").textContent = s.running ? `${s.running} trial(s) on ${workerNames(s) || "a worker"}` : "none";
      document.getElementById("task").textContent = s.task;
      showError(document.getElementById("stopped"), s.stopped ? "stopped: " + s.stopped + (s.running ? " (running trials end within seconds)" : "") : "");
      showError(document.getElementById("failure"), s.failure ? "its workers gave up: " + s.failure : "");
      stopButton.disabled = !LIVE.has(s.state) || !!s.stopped;
      resumeButton.disabled = s.state === "finished" || !(s.stopped || s.state === "failed");
      // the smallest budget that runs another trial of the search (re-evaluation runs come on top of it)
      moreTrials.min = String(s.search_finished + 1);
      if (!moreTrials.value || document.activeElement !== moreTrials && Number(moreTrials.value) <= s.search_finished) {
        moreTrials.value = String(Math.max(s.search_budget, s.search_finished) + 5);
      }
      const exportable = b !== null && b !== undefined;
      exportLink.classList.toggle("disabled", !exportable);
      exportLink.setAttribute("aria-disabled", String(!exportable));
      exportLink.title = exportable ? `download trial ${b.number} as a folder that loads with transformers.pipeline` : "no finished trial to export yet";
      renderTrials(name, detail.trials, s.best_trial);
      if (!dataShown) dataShown = renderData(detail.data_report);
    }

    async function refreshFigures() {
      const figs = await getJson("/studies/" + encodeURIComponent(name) + "/figures.json");
      draw("fig-history", figs.history, "history-empty");
      draw("fig-curves", figs.learning_curves, "curves-empty");
      draw("fig-importance", figs.importance, "importance-note", figs.importance_note || "");
      if (figs.importance && figs.importance_note) {
        const note = document.getElementById("importance-note");
        note.textContent = figs.importance_note;
        note.hidden = false;
      }
    }

    let busy = false;
    let again = false;
    // One refresh at a time: a timer tick during a slow answer is dropped (the next tick asks); a button's refresh
    // waits for the one in flight and then reads again, so it shows what the button did.
    async function refresh(force) {
      if (busy) {
        if (force) again = true;
        return;
      }
      busy = true;
      again = false;
      try {
        const detail = await getJson(apiUrl(name));
        render(detail);
        // a stopped study's last trial winds down for a few seconds: keep following it until none runs
        if (!LIVE.has(detail.study.state) && !detail.study.running) follow(IDLE_MS);
        else start();
        const sig = signature(detail);
        if (sig !== drawnFor) {
          await refreshFigures();
          drawnFor = sig;
        }
        showError(actionError, actionMessage);
        stamp();
      } catch (e) {
        showError(actionError, "could not read the study: " + e.message);
      } finally {
        busy = false;
      }
      if (again) refresh(true);
    }

    function follow(ms) {
      if (period === ms) return;
      if (timer !== null) clearInterval(timer);
      period = ms;
      timer = setInterval(() => { if (!document.hidden) refresh(); }, ms);
    }

    function start() {
      follow(REFRESH_MS);
    }

    async function act(verb, form) {
      stopButton.disabled = resumeButton.disabled = true;
      actionMessage = "";
      try {
        const response = await fetch(apiUrl(name, "/" + verb), { method: "POST", body: form });
        if (response.status === 401) {
          window.location.assign("/login");
          return;
        }
        if (!response.ok) {
          actionMessage = (await errorLines(response)).join("\n");
        }
      } catch (e) {
        actionMessage = "could not reach the server: " + e.message;
      }
      showError(actionError, actionMessage);
      await refresh(true);
      if (verb === "resume") start();
    }

    stopButton.addEventListener("click", () => act("stop"));
    resumeButton.addEventListener("click", () => act("resume"));
    moreForm.addEventListener("submit", (event) => {
      event.preventDefault();
      act("resume", new FormData(moreForm));
    });
    exportLink.addEventListener("click", (event) => {
      if (exportLink.classList.contains("disabled")) event.preventDefault();
    });
    // A trial's export is asked for first and saved only when the server made it: a refusal (its checkpoint was
    // deleted, say) is shown on the page instead of a failed download.
    document.getElementById("trials").addEventListener("click", async (event) => {
      const link = event.target.closest("a.export-trial");
      if (!link) return;
      event.preventDefault();
      if (link.dataset.busy) return; // one export of a trial at a time: the server builds each zip anew
      link.dataset.busy = "1";
      link.textContent = "exporting…";
      actionMessage = "";
      try {
        const response = await fetch(link.href);
        if (response.status === 401) {
          window.location.assign("/login");
          return;
        }
        if (!response.ok) {
          actionMessage = (await errorLines(response)).join("\n");
        } else {
          const disposition = response.headers.get("content-disposition") || "";
          const file = (disposition.match(/filename="?([^";]+)"?/) || [])[1] || "export.zip";
          const url = URL.createObjectURL(await response.blob());
          const save = el("a", { href: url, download: file });
          document.body.appendChild(save);
          save.click();
          save.remove();
          setTimeout(() => URL.revokeObjectURL(url), 60000);
        }
      } catch (e) {
        actionMessage = "could not reach the server: " + e.message;
      } finally {
        delete link.dataset.busy;
        link.textContent = "export";
      }
      showError(actionError, actionMessage);
    });
    document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
    refresh();
    start();
  }

  if (body.dataset.page === "index") indexPage();
  else if (body.dataset.page === "study") studyPage();
})();
