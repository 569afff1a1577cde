/* openlfr console: live alert queue (EventSource), a sound and a visible cue for new alerts,
   live dashboard figures, keyboard shortcuts. Plain JavaScript, no build step. */
(function () {
  "use strict";
  var openlfr = (window.openlfr = { beeps: 0, events: 0, sound: false });
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  var LABELS = { true_alert: "True alert", false_alert: "False alert", confirmed: "Confirmed", unconfirmed: "Unconfirmed",
    arrest: "Arrest", other_action: "Other action", no_further_action: "No further action", no_engagement: "No engagement",
    wanted_by_courts: "Wanted by courts", wanted_on_suspicion: "Wanted on suspicion of an offence",
    missing_or_vulnerable: "Missing or vulnerable person", risk_of_harm: "Risk of harm to self or others" };
  function label(v) { return v == null ? "—" : (LABELS[v] || String(v).replace(/_/g, " ")); }
  function dt(iso) {
    if (!iso) return "—";
    var d = new Date(iso);
    if (isNaN(d)) return iso;
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC").replace(/Z$/, " UTC");
  }
  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") e.textContent = attrs[k]; else if (k === "className") e.className = attrs[k]; else e.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { e.appendChild(c); });
    return e;
  }
  function pct(v, digits) { return v == null ? "—" : (100 * v).toFixed(digits) + "%"; }
  function duration(s) {
    s = Math.max(0, Math.floor(s));
    var d = Math.floor(s / 86400); s -= d * 86400;
    var h = Math.floor(s / 3600); s -= h * 3600;
    var m = Math.floor(s / 60); s -= m * 60;
    function two(n) { return (n < 10 ? "0" : "") + n; }
    return (d ? d + "d " : "") + two(h) + ":" + two(m) + ":" + two(s);
  }

  /* -- sound: WebAudio, off until the user turns it on (browsers need a gesture to play) -- */
  var audio = null;
  function beep() {
    openlfr.beeps += 1;
    if (!openlfr.sound) return;
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      if (audio.state === "suspended") audio.resume();
      [0, 0.22].forEach(function (t0) {
        var o = audio.createOscillator(), g = audio.createGain();
        o.type = "square"; o.frequency.value = 880;
        g.gain.setValueAtTime(0.0001, audio.currentTime + t0);
        g.gain.exponentialRampToValueAtTime(0.25, audio.currentTime + t0 + 0.02);
        g.gain.exponentialRampToValueAtTime(0.0001, audio.currentTime + t0 + 0.18);
        o.connect(g); g.connect(audio.destination);
        o.start(audio.currentTime + t0); o.stop(audio.currentTime + t0 + 0.2);
      });
    } catch (e) { /* no audio device: the visible cue remains */ }
  }
  function setupSound() {
    var btn = document.getElementById("sound-toggle");
    if (!btn) return;
    function show() { btn.textContent = "Sound: " + (openlfr.sound ? "on" : "off"); btn.setAttribute("aria-pressed", String(openlfr.sound)); }
    openlfr.sound = localStorage.getItem("openlfr.sound") === "on";
    show();
    btn.addEventListener("click", function () {
      openlfr.sound = !openlfr.sound;
      localStorage.setItem("openlfr.sound", openlfr.sound ? "on" : "off");
      show();
      if (openlfr.sound) { var b = openlfr.beeps; beep(); openlfr.beeps = b; }
    });
  }

  /* -- the live stream -- */
  function stream(after, handlers, stateEl) {
    if (!window.EventSource) return null;
    var url = "/api/stream" + (after != null && after !== "" ? "?after=" + encodeURIComponent(after) : "");
    var es = new EventSource(url);
    function state(text, cls) { if (stateEl) { stateEl.textContent = text; stateEl.className = "pill " + cls; } }
    es.onopen = function () { state("live", "live"); };
    es.onerror = function () { state("reconnecting…", "down"); };
    Object.keys(handlers).forEach(function (name) {
      es.addEventListener(name, function (ev) {
        openlfr.events += 1;
        var data = {};
        try { data = JSON.parse(ev.data); } catch (e) { return; }
        handlers[name](data);
      });
    });
    es.addEventListener("logout", function () { es.close(); window.location.href = "/login"; });
    return es;
  }

  /* -- alerts page -- */
  var unseen = 0, baseTitle = document.title;
  function statusText(a) {
    var s = a.adjudication ? label(a.adjudication) : "Awaiting review";
    if (a.engagement) s += " · " + label(a.engagement[0]) + ", " + label(a.engagement[1]);
    return s;
  }
  function alertRow(a) {
    var img = el("img", { className: "thumb", src: "/api/alerts/" + a.id + "/probe.jpg", alt: "probe crop of alert " + a.id });
    var link = el("a", { className: "button", href: "/console/alerts/" + a.id }, [document.createTextNode("Review"),
      el("span", { className: "sr-only", text: " alert " + a.id })]);
    var status = el("td", { className: "status" });
    if (a.adjudication) status.textContent = statusText(a); else status.appendChild(el("strong", { text: statusText(a) }));
    status.setAttribute("data-label", "Status");
    return el("tr", { "data-alert-id": String(a.id), className: a.adjudication || "pending" }, [
      el("td", { className: "c-probe" }, [img]), el("td", { className: "c-time", "data-label": "Time", text: dt(a.occurred_at) }),
      el("td", { className: "subject", "data-label": "Subject", text: a.subject_name || "—" }),
      el("td", { className: "c-cat", "data-label": "Category", text: label(a.category) }),
      el("td", { className: "c-cam", "data-label": "Camera", text: a.camera }),
      el("td", { className: "c-dep", "data-label": "Deployment", text: String(a.deployment_id) }),
      el("td", { className: "c-dist", "data-label": "Distance", title: a.decided || "",
                 text: Number(a.distance).toFixed(3) + (a.threshold != null ? " < " + Number(a.threshold).toFixed(3) : "") }), status,
      el("td", { className: "c-open" }, [link])]);
  }
  function matches(table, a) {
    var dep = table.getAttribute("data-deployment"), cam = table.getAttribute("data-camera");
    var st = table.getAttribute("data-status"), subj = (table.getAttribute("data-subject") || "").toLowerCase();
    if (dep && String(a.deployment_id) !== dep) return false;
    if (cam && a.camera !== cam) return false;
    if (st && st !== (a.adjudication || "pending")) return false;
    if (subj && String(a.subject_id) !== subj && String(a.subject_name || "").toLowerCase().indexOf(subj) < 0 &&
        String(a.subject_ref || "").toLowerCase().indexOf(subj) < 0) return false;
    return true;
  }
  function announce(banner, a, fresh) {
    /* the banner names one alert and follows it: its review link, then its decision */
    var who = (a.subject_name || "subject " + a.subject_id) + " on camera " + a.camera;
    banner.textContent = "";
    banner.setAttribute("data-alert-id", String(a.id));
    if (!a.adjudication) {
      banner.className = "banner";
      banner.appendChild(document.createTextNode((fresh ? "New alert " : "Alert ") + a.id + ": " + who +
        " (distance " + Number(a.distance).toFixed(3) + ") "));
      banner.appendChild(el("a", { className: "button", href: "/console/alerts/" + a.id, text: "Review now" }));
    } else {
      banner.className = "banner done";
      banner.appendChild(document.createTextNode("Alert " + a.id + ": " + who + " — " + statusText(a) + " "));
      banner.appendChild(el("a", { href: "/console/alerts/" + a.id, text: "Open" }));
    }
    banner.hidden = false;
  }
  function setupAlerts() {
    var table = document.getElementById("alert-queue");
    if (!table) return;
    var tbody = table.tBodies[0], banner = document.getElementById("new-alert-banner");
    var firstPage = (table.getAttribute("data-page") || "1") === "1";
    setupSound();
    window.addEventListener("focus", function () { unseen = 0; document.title = baseTitle; });
    stream(table.getAttribute("data-seq"), {
      alert: function (a) {
        var dep = table.getAttribute("data-deployment");
        if (dep && String(a.deployment_id) !== dep) return;
        var old = tbody.querySelector('tr[data-alert-id="' + a.id + '"]');
        if (firstPage && matches(table, a)) {
          var empty = tbody.querySelector("tr.empty");
          if (empty) empty.remove();
          var row = alertRow(a);
          row.classList.add("new");
          if (old) old.replaceWith(row); else tbody.insertBefore(row, tbody.firstChild);
        }
        announce(banner, a, true);
        unseen += 1;
        document.title = "(" + unseen + ") " + baseTitle;
        beep();
      },
      alert_update: function (a) {
        if (banner.getAttribute("data-alert-id") === String(a.id)) announce(banner, a, false);
        var old = tbody.querySelector('tr[data-alert-id="' + a.id + '"]');
        if (!old) return;
        var row = alertRow(a);
        if (old.classList.contains("new") && !a.adjudication) row.classList.add("new");
        old.replaceWith(row);
      },
      refresh: function () { window.location.reload(); }
    }, document.getElementById("live-state"));
  }

  /* -- deployment dashboard -- */
  function setupDashboard() {
    var box = document.getElementById("dashboard");
    if (!box) return;
    var id = box.getAttribute("data-deployment"), ends = new Date(box.getAttribute("data-ends"));
    var status = box.getAttribute("data-status"), offset = 0;
    function set(idName, value) {
      var e = document.getElementById(idName);
      if (e && e.textContent !== value) {
        e.textContent = value;
        var card = e.parentNode; card.classList.add("changed");
        setTimeout(function () { card.classList.remove("changed"); }, 1500);
      }
    }
    function tick() {
      if (["planned", "authorised", "active"].indexOf(status) < 0) return;
      var left = (ends - new Date()) / 1000 - offset;
      var e = document.getElementById("fig-time-left");
      if (e) e.textContent = duration(left);
    }
    function refresh() {
      fetch("/api/deployments/" + id, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (d) {
          if (!d) return;
          var f = d.figures;
          offset = ((ends - new Date()) / 1000) - f.seconds_left;  /* the server's clock wins */
          status = d.status;
          set("fig-faces", String(f.faces_seen));
          set("fig-alerts", String(f.alerts));
          set("fig-adjudicated", String(f.adjudicated));
          set("fig-true-false", f.true_alerts + " / " + f.false_alerts);
          var minFaces = Number(box.getAttribute("data-min-faces") || 0);
          set("fig-far", f.faces_seen && f.faces_seen < minFaces ? "too few faces" : pct(f.false_alert_rate, 3));
          set("fig-precision", pct(f.alert_precision, 1));
          var st = document.getElementById("dep-status");
          if (st && st.textContent !== d.status) { st.textContent = d.status; st.className = "pill " + d.status; }
          if (["planned", "authorised", "active"].indexOf(d.status) < 0) set("fig-time-left", "—");
          else tick();
        }).catch(function () {});
    }
    openlfr.refreshDashboard = refresh;
    function camera(c) {
      if (String(c.deployment_id) !== id) return;
      var row = document.querySelector('#camera-table tr[data-camera="' + (window.CSS && CSS.escape ? CSS.escape(c.camera) : c.camera) + '"]');
      if (!row) return;
      var st = row.querySelector(".cam-state");
      st.textContent = c.state; st.className = "pill cam-state " + c.state;
      var down = row.querySelector(".cam-down");
      if (c.down_for_s) {
        if (!down) { down = el("span", { className: "cam-down" }); st.after(document.createTextNode(" "), down); }
        down.textContent = "for " + duration(c.down_for_s);
      } else if (down) { down.remove(); }
      row.querySelector(".cam-message").textContent = c.message ? " " + c.message : "";
      row.querySelector(".cam-fps").textContent = c.fps == null ? "—" : Number(c.fps).toFixed(1);
      row.querySelector(".cam-dropped").textContent = String(c.dropped);
      row.querySelector(".cam-faces").textContent = String(c.faces_seen);
      row.querySelector(".cam-last").textContent = dt(c.last_frame_at);
      row.querySelector(".cam-worker").textContent = c.worker || "—";
      row.classList.toggle("warning", !!c.warning);
      openlfr.cameras = (openlfr.cameras || {});
      openlfr.cameras[c.camera] = c;
      var warn = document.getElementById("camera-warning"), texts = [];
      Object.keys(openlfr.cameras).forEach(function (k) {
        var x = openlfr.cameras[k];
        if (x.warning) texts.push("Camera " + x.camera + " " + x.state + " for " + duration(x.down_for_s || 0) + (x.message ? ": " + x.message : "") + ".");
      });
      if (warn) {
        if (texts.length) { warn.textContent = texts.join(" "); warn.hidden = false; }
        else if (document.querySelectorAll("#camera-table tr.warning").length === 0) { warn.hidden = true; }
      }
    }
    function refreshCameras() {
      fetch("/api/deployments/" + id + "/cameras", { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (cs) { (cs || []).forEach(camera); }).catch(function () {});
    }
    stream(null, {
      camera: camera,
      camera_warning: function (w) { if (String(w.deployment_id) === id) refreshCameras(); },
      alert: function (a) { if (String(a.deployment_id) === id) refresh(); },
      alert_update: function (a) { if (String(a.deployment_id) === id) refresh(); },
      deployment: function (d) { if (String(d.id) === id) { refresh(); refreshCameras(); } },
      refresh: refresh
    }, null);
    setInterval(tick, 1000);
    setInterval(refresh, 5000);
    refresh();
  }

  /* -- alert detail: T / F keys -- */
  function setupKeys() {
    document.addEventListener("keydown", function (ev) {
      if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
      var t = ev.target && ev.target.tagName;
      if (t === "INPUT" || t === "TEXTAREA" || t === "SELECT") return;
      var btn = document.querySelector('button[data-key="' + ev.key.toLowerCase() + '"]');
      if (btn) { ev.preventDefault(); btn.click(); }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupAlerts();
    setupDashboard();
    setupKeys();
    openlfr.ready = true;
  });
  openlfr.csrf = csrf;
})();
