// The kiosk page: it draws whatever state the server sends (server-sent events) and
// posts the visitor's taps. All state lives on the server, so a reload picks up the
// running visit; the server also guards against a second session from a double tap and
// takes an answer only for the question on screen. Every word comes from the server's
// string catalogue (/api/strings); every screen is drawn from the current state only, so
// nothing of an earlier visitor can stay on it.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const screens = ["loading", "welcome", "camera", "capture", "saving", "result"];
  const phaseScreen = { welcome: "welcome", camera_missing: "camera", capture: "capture",
                        saving: "saving", result: "result" };
  // For tests and staff: what the page did (events received, when a result was shown).
  const log = window.kioskLog = { events: 0, lastState: null, resultShown: null };
  let S = {};  // the catalogue
  let previewFor = null;
  let lastState = null;

  function t(key, values) {
    let text = S[key] || "";
    for (const name in (values || {})) text = text.split("{" + name + "}").join(String(values[name]));
    return text;
  }

  function show(name) {
    for (const s of screens) $("screen-" + s).hidden = (s !== name);
  }

  function setText(id, text) {
    const el = $(id);
    if (el.textContent !== text) el.textContent = text;
  }

  function post(path, body) {
    return fetch(path, { method: "POST", credentials: "same-origin",
                         headers: { "X-Kiosk-Request": "1", "Content-Type": "application/json" },
                         body: JSON.stringify(body || {}) })
      .then((r) => r.json())
      .then((d) => { if (d.state) render(d.state); return d; });
  }

  function applyStrings(language) {
    document.documentElement.lang = language;
    document.title = t("page.title");
    for (const el of document.querySelectorAll("[data-s]")) el.textContent = t(el.dataset.s);
    $("preview").alt = t("page.preview_alt");
  }

  function renderWelcome(s) {
    const k = s.kiosk || {};
    setText("welcome-lead", t("page.welcome_lead", { minutes: k.visit_minutes || 1 }));
    setText("consent-kept", t(k.store_media ? "page.media_kept" : "page.nothing_kept"));
    $("research-row").hidden = !k.research_opt_in;
    if (lastState === null || lastState.phase !== "welcome") $("research").checked = false;  // each visitor chooses
    $("start").disabled = false;
  }

  function renderCapture(s) {
    const c = s.capture;
    if (!c) return;
    const q = s.questionnaire;
    $("questions").hidden = !q || q.complete;
    $("prompt-panel").hidden = !!q && !q.complete;
    if (q && !q.complete) {
      setText("question", t("phq8.item" + (q.item + 1)));
      $("read-aloud").hidden = !c.has_audio;
      for (let v = 0; v < 4; v++) $("answer-" + v).setAttribute("aria-pressed", String(q.answers[q.item] === v));
      setText("question-of", t("page.question_of", { n: q.item + 1, total: q.total }));
    } else if (q && q.complete) {
      setText("prompt-intro", "");
      setText("prompt", t("page.sensing_more", { prompt: c.prompt || "" }));
      setText("question-of", "");
    } else {
      setText("prompt-intro", t("page.answer_out_loud"));
      setText("prompt", c.prompt || "");
      setText("question-of", "");
    }
    $("back").hidden = !q || q.complete;
    $("back").disabled = !q || q.item === 0;
    $("progress-bar").style.width = Math.round(100 * c.progress) + "%";
    const left = Math.max(0, Math.ceil(c.expected_s - c.elapsed_s));
    setText("progress-text", c.sensing_done ? (q && !q.complete ? t("page.sensing_done") : "")
                                            : t("page.seconds_left", { seconds: left }));
    $("voice-meter").style.width = Math.round(100 * (c.has_audio && !c.microphone_stopped ? (c.level || 0) : 0)) + "%";
    const badge = $("face-badge");
    badge.className = "badge " + (c.face_found ? "on" : "off");
    setText("face-badge", !c.has_video ? t("page.no_camera") : c.camera_stopped ? t("page.camera_stopped")
                          : c.face_found ? t("page.face_found") : t("page.face_looking"));
    const hints = $("hints");
    const codes = (c.hints || []).map((h) => h.code).join(",");
    if (hints.dataset.codes !== codes) {
      hints.dataset.codes = codes;
      hints.replaceChildren(...(c.hints || []).map((h) => {
        const li = document.createElement("li");
        li.dataset.code = h.code;
        li.textContent = h.text;
        return li;
      }));
    }
    const img = $("preview");
    if (c.camera_stopped || c.sensing_done) {
      stopPreview();  // a frozen picture (and its face box) is never left on screen
    } else if (s.preview && s.phase === "capture" && previewFor !== s.session_id) {
      previewFor = s.session_id;
      img.src = "/preview.mjpg?session=" + encodeURIComponent(s.session_id);
    }
  }

  function stopPreview() {
    if (previewFor !== null) {
      previewFor = null;
      $("preview").removeAttribute("src");
    }
  }

  function card(signal) {
    const div = document.createElement("div");
    div.className = "card" + (signal.lead ? " lead" : "");
    div.dataset.signal = signal.name;
    const h2 = document.createElement("h2");
    h2.textContent = signal.title;
    div.appendChild(h2);
    const p = document.createElement("p");
    p.className = "reading";
    p.textContent = signal.text;
    div.appendChild(p);
    for (const caveat of signal.caveats || []) {
      const c = document.createElement("p");
      c.className = "caveat";
      c.textContent = caveat;
      div.appendChild(c);
    }
    return div;
  }

  function renderResult(s) {
    const r = s.result;
    if (!r) return;
    setText("result-title", t(r.abstained ? "page.no_result" : "page.result_title"));
    // Drawn from this visit only: the cards are rebuilt, never left from the last visit.
    const key = r.session_id + ":" + (r.signals || []).map((x) => x.text).join("|");
    const signals = $("result-signals");
    if (signals.dataset.key !== key) {
      signals.dataset.key = key;
      signals.replaceChildren(...(r.abstained ? [] : (r.signals || []).map(card)));
    }
    $("result-why").hidden = !r.abstained;
    setText("result-why", r.why || "");
    $("result-disagree").hidden = !r.disagree;
    setText("result-disagree", r.disagree || "");
    setText("result-advice", r.advice || "");
    setText("result-help", r.help || "");
    $("result-research").hidden = !r.research_kept;
    setText("result-research", r.research_kept || "");
    setText("result-notice", r.notice || "");
    setText("result-reference", t("page.reference", { id: r.session_id, seconds: Math.ceil(s.reset_in_s || 0) }));
    if (!log.resultShown || log.resultShown.session_id !== r.session_id) {
      log.resultShown = { session_id: r.session_id, at_ms: Date.now(), capture_ended_ms: s.capture_ended_ms };
    }
  }

  function render(s) {
    log.lastState = s;
    const screen = phaseScreen[s.phase] || "loading";
    if (screen !== "capture") stopPreview();
    if (screen !== "result") {  // nothing of a finished visit survives it
      $("result-signals").replaceChildren();
      $("result-signals").dataset.key = "";
    }
    if (screen === "welcome") renderWelcome(s);
    if (screen === "camera") {
      setText("camera-message", s.message || "");
      setText("camera-retry", t("page.retry", { seconds: Math.ceil(s.retry_in_s || 0) }));
    }
    if (screen === "capture" || screen === "saving") renderCapture(s);
    if (screen === "result") renderResult(s);
    show(screen);
    lastState = s;
  }

  function connect() {
    const events = new EventSource("/api/events");
    events.onopen = () => { $("offline").hidden = true; };
    events.onerror = () => { $("offline").hidden = false; };
    events.onmessage = (e) => {
      log.events += 1;
      render(JSON.parse(e.data));
    };
  }

  function answer(value) {
    const q = lastState && lastState.questionnaire;
    if (!q || q.complete) return;
    post("/api/answer", { item: q.item, value: value }).catch(() => {});
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("start").addEventListener("click", () => {
      $("start").disabled = true; // one tap is enough; the server ignores a second one anyway
      post("/api/start", { research: $("research").checked }).catch(() => { $("start").disabled = false; });
    });
    for (let v = 0; v < 4; v++) $("answer-" + v).addEventListener("click", () => answer(v));
    $("back").addEventListener("click", () => { post("/api/back"); });
    $("stop").addEventListener("click", () => { post("/api/stop"); });
    $("done").addEventListener("click", () => { post("/api/reset"); });
    document.addEventListener("contextmenu", (e) => e.preventDefault());
    if (window.location.search.indexOf("token=") >= 0) {
      window.history.replaceState(null, "", "/"); // the cookie carries it from here on
    }
    fetch("/api/strings", { credentials: "same-origin" })
      .then((r) => r.json())
      .then((d) => { S = d.strings || {}; applyStrings(d.language || "en"); $("offline").textContent = t("page.connecting"); connect(); })
      .catch(() => { $("offline").hidden = false; });
  });
})();
