// The kiosk page: it draws whatever state the server sends (server-sent events) and
// posts the visitor's taps. All state lives on the server, so a reload picks up the
// running session; the server also guards against a second session from a double tap.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const screens = ["loading", "welcome", "camera", "capture", "saving", "result"];
  const phaseScreen = { welcome: "welcome", camera_missing: "camera", capture: "capture",
                        saving: "saving", result: "result" };
  // For tests and staff: what the page did (events received, when a result was shown).
  const log = window.kioskLog = { events: 0, lastState: null, resultShown: null };
  let previewFor = null;

  function show(name) {
    for (const s of screens) $("screen-" + s).hidden = (s !== name);
  }

  function setText(id, text) {
    const el = $(id);
    if (el.textContent !== text) el.textContent = text;
  }

  function post(path) {
    return fetch(path, { method: "POST", headers: { "X-Kiosk-Request": "1" }, credentials: "same-origin" })
      .then((r) => r.json())
      .then((d) => { if (d.state) render(d.state); return d; });
  }

  function renderWelcome(s) {
    const k = s.kiosk || {};
    setText("welcome-seconds", String(Math.round(k.capture_seconds || 40)));
    if (k.store_media) {
      $("consent-kept").innerHTML = "<b>What is kept:</b> this kiosk is set to keep face pictures and sound " +
        "with the result, under an anonymous number, for the clinic.";
    }
    $("start").disabled = false;
  }

  function renderCapture(s) {
    const c = s.capture;
    if (!c) return;
    setText("prompt", c.prompt || "");
    $("progress-bar").style.width = Math.round(100 * c.progress) + "%";
    const left = Math.max(0, Math.ceil(c.expected_s - c.elapsed_s));
    setText("progress-text", left + " s to go");
    $("voice-meter").style.width = Math.round(100 * (c.level || 0)) + "%";
    const badge = $("face-badge");
    badge.className = "badge " + (c.face_found ? "on" : "off");
    setText("face-badge", c.has_video ? (c.face_found ? "Face found" : "Looking for your face") : "No camera");
    const hints = $("hints");
    const html = (c.hints || []).map((h) => "<li data-code=\"" + h.code + "\">" + h.text + "</li>").join("");
    if (hints.innerHTML !== html) hints.innerHTML = html;
    const img = $("preview");
    if (s.preview && s.phase === "capture" && previewFor !== s.session_id) {
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

  function renderResult(s) {
    const r = s.result;
    if (!r) return;
    const none = r.abstained;
    $("result-readings").hidden = none;
    $("result-none").hidden = !none;
    if (none) {
      setText("result-why", r.why || "");
    } else {
      const v = r.vote;
      if (v.status === "ok") {
        setText("vote-level", v.level);
        setText("vote-message", v.message || "");
        setText("vote-caveat", v.provisional ? (v.caveat || "") : "");
      } else {
        setText("vote-level", "no reading");
        setText("vote-message", v.reason || "");
        setText("vote-caveat", "");
      }
      const p = r.phq8;
      if (p.status === "ok") {
        setText("phq8-mu", p.mu_text);
        setText("phq8-low", p.low_text);
        setText("phq8-high", p.high_text);
        setText("phq8-band", "Band: " + p.band);
      } else {
        setText("phq8-mu", "no reading");
        setText("phq8-low", "-");
        setText("phq8-high", "-");
        setText("phq8-band", p.reason || "");
      }
      const badge = $("demo-badge");
      badge.hidden = !r.demo_note;
      setText("demo-badge", r.demo_note || "");
    }
    setText("next-steps", r.next_steps || "");
    setText("result-notice", r.notice);
    setText("result-id", r.session_id);
    setText("reset-in", String(Math.ceil(s.reset_in_s || 0)));
    if (!log.resultShown || log.resultShown.session_id !== r.session_id) {
      log.resultShown = { session_id: r.session_id, at_ms: Date.now(), capture_ended_ms: s.capture_ended_ms };
    }
  }

  function render(s) {
    log.lastState = s;
    const screen = phaseScreen[s.phase] || "loading";
    if (screen !== "capture") stopPreview();
    if (screen === "welcome") renderWelcome(s);
    if (screen === "camera") {
      setText("camera-message", s.message || "");
      setText("camera-retry", String(Math.ceil(s.retry_in_s || 0)));
    }
    if (screen === "capture" || screen === "saving") renderCapture(s);
    if (screen === "result") renderResult(s);
    show(screen);
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

  document.addEventListener("DOMContentLoaded", () => {
    $("start").addEventListener("click", () => {
      $("start").disabled = true; // one tap is enough; the server ignores a second one anyway
      post("/api/start").catch(() => { $("start").disabled = false; });
    });
    $("stop").addEventListener("click", () => { post("/api/stop"); });
    $("done").addEventListener("click", () => { post("/api/reset"); });
    document.addEventListener("contextmenu", (e) => e.preventDefault());
    if (window.location.search.indexOf("token=") >= 0) {
      window.history.replaceState(null, "", "/"); // the cookie carries it from here on
    }
    connect();
  });
})();
