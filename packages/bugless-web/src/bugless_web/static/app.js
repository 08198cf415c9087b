// bugless: progressive enhancement only. Every page works without these files.
// Loaded with `defer` from our own origin (the CSP forbids inline scripts), in
// order: this file (what every page does: the build, times, lists, shortcuts),
// then compose.js (writing: templates, previews, attachments, name completion)
// and pages.js (hotlist re-rank, the issue page's live updates). The later
// files use what this one shares as `window.bugless`.
(function () {
  "use strict";

  var csrfToken = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // ---- the page's build, for rollouts of incompatible versions -----------------
  // Every request names the build of this page; a replica of an incompatible
  // build changes nothing and asks for a reload, which happens once per server
  // build (a reload that lands on an old replica again does not loop).
  var build = (document.querySelector('meta[name="bugless-build"]') || {}).content || "";
  var draftKey = "bugless-draft:" + window.location.pathname;
  function reloadOnce(serverBuild) {
    var key = "bugless-reloaded-for";
    try {
      if (window.sessionStorage.getItem(key) === serverBuild) return;
      window.sessionStorage.setItem(key, serverBuild);
      // What the person typed survives the reload: the new page gets it back.
      var draft = {};
      document.querySelectorAll("form textarea[name], form input[type=text][name]").forEach(function (field) {
        // Keyed by the form's id too: a page has several boxes called "comment".
        var key = (field.form && field.form.id ? field.form.id : "") + " " + field.name;
        if (field.value && !(key in draft)) draft[key] = field.value;
      });
      window.sessionStorage.setItem(draftKey, JSON.stringify(draft));
    } catch (e) { return; }
    window.location.reload();
  }
  try {
    var saved = window.sessionStorage.getItem(draftKey);
    if (saved) {
      window.sessionStorage.removeItem(draftKey);
      var values = JSON.parse(saved);
      Object.keys(values).forEach(function (key) {
        var formId = key.split(" ")[0], name = key.slice(formId.length + 1).replace(/["\\]/g, "");
        var scope = formId && /^[A-Za-z][\w-]*$/.test(formId) ? "#" + formId : "form";
        var field = document.querySelector(scope + ' [name="' + name + '"]');
        if (field && (field.tagName === "TEXTAREA" || field.type === "text") && !field.value) {
          field.value = values[key];
        }
      });
    }
  } catch (e) { /* no storage: nothing to restore */ }
  if (build && window.fetch) {
    var plainFetch = window.fetch.bind(window);
    window.fetch = function (input, init) {
      init = init || {};
      var headers = new Headers(init.headers || {});
      headers.set("X-Bugless-Build", build);
      init.headers = headers;
      return plainFetch(input, init).then(function (response) {
        if (response.status === 409 && response.headers.get("X-Bugless-Reload")) {
          reloadOnce(response.headers.get("X-Bugless-Build") || "unknown");
        }
        return response;
      });
    };
  }
  if (build) {
    Array.prototype.forEach.call(document.querySelectorAll('form[method="post"]'), function (form) {
      if (form.querySelector('input[name="_build"]')) return;
      var field = document.createElement("input");
      field.type = "hidden"; field.name = "_build"; field.value = build;
      form.appendChild(field);
    });
  }

  // ---- the browser's time zone, for the search language's days ----------------
  // Searches count `today` and `2026-01-31` midnight to midnight in this zone
  // (the server reads it from this cookie; UTC until it is set).
  var zone = "";
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { zone = ""; }
  // IANA names (Europe/Paris, Etc/GMT+12) are made of cookie-safe characters only.
  if (/^[A-Za-z0-9_+\-\/]{1,64}$/.test(zone) &&
      ("; " + document.cookie + ";").indexOf("; bugless_tz=" + zone + ";") === -1) {
    document.cookie = "bugless_tz=" + zone +
      "; path=/; max-age=31536000; samesite=lax" + (location.protocol === "https:" ? "; secure" : "");
  }

  // ---- relative times: "3 hours ago", the exact local time on hover -----------
  // The server writes <time datetime="…Z">2026-03-10 14:05 UTC</time>; this
  // shows how long ago in words and puts the time in the browser's zone in the
  // tooltip, and refreshes the words every minute.
  var relative = window.Intl && Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }) : null;
  var exact = window.Intl ? new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short",
  }) : null;
  var UNITS = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400], ["hour", 3600], ["minute", 60]];
  function ago(seconds) {
    var size = Math.abs(seconds);
    for (var i = 0; i < UNITS.length; i++) {
      if (size >= UNITS[i][1]) return relative.format(-Math.round(seconds / UNITS[i][1]), UNITS[i][0]);
    }
    return relative.format(-Math.round(seconds), "second");
  }
  function showTimes(root) {
    if (!relative || !exact) return;
    (root || document).querySelectorAll("time[datetime]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when.getTime())) return;
      el.textContent = ago((Date.now() - when.getTime()) / 1000);
      el.title = exact.format(when);
      el.setAttribute("data-relative", "true");
    });
  }
  showTimes(document);
  window.setInterval(function () { showTimes(document); }, 60000);

  function isTyping(target) {
    if (!target) return false;
    var tag = target.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || target.isContentEditable;
  }

  // ---- list selection (j/k/o/x) --------------------------------------------
  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll("tr.row[data-href]"));
  }
  var selected = -1;
  function select(index) {
    var all = rows();
    if (!all.length) return;
    index = Math.max(0, Math.min(all.length - 1, index));
    all.forEach(function (row) { row.classList.remove("selected"); });
    selected = index;
    all[index].classList.add("selected");
    all[index].scrollIntoView({ block: "nearest" });
  }
  function openSelected(newTab) {
    var all = rows();
    if (selected < 0 || selected >= all.length) return;
    var href = all[selected].getAttribute("data-href");
    if (newTab) window.open(href, "_blank", "noopener"); else window.location.assign(href);
  }

  // ---- bulk edit: the selection count in the bar above the table ---------------
  var bulkCount = document.querySelector(".bulk-count");
  function selectedBoxes() {
    return Array.prototype.slice.call(document.querySelectorAll('input[name="issue"][form="bulk"]'));
  }
  function showSelection() {
    if (!bulkCount) return;
    var all = selectedBoxes();
    var n = all.filter(function (box) { return box.checked; }).length;
    bulkCount.setAttribute("data-count", String(n));
    bulkCount.textContent = n === 0 ? "Select issues to edit them together"
      : n + (n === 1 ? " issue" : " issues") + " selected";
    var every = document.querySelector(".select-all");
    if (every) {
      every.checked = n > 0 && n === all.length;
      every.indeterminate = n > 0 && n < all.length;
    }
    var bar = document.querySelector(".bulk-bar");
    if (bar) bar.classList.toggle("has-selection", n > 0);
  }
  document.addEventListener("change", function (event) {
    var t = event.target;
    if (t.classList && t.classList.contains("select-all")) {
      selectedBoxes().forEach(function (box) { box.checked = t.checked; });
    }
    if (t.name === "issue" || (t.classList && t.classList.contains("select-all"))) showSelection();
  });
  showSelection();

  // ---- help dialog -----------------------------------------------------------
  // A modal dialog: opening it moves the focus to its first control, Tab stays
  // inside it, and closing it puts the focus back where it was.
  var help = document.getElementById("shortcuts");
  var focusBeforeHelp = null;
  function helpControls() {
    return Array.prototype.slice.call(help.querySelectorAll("input, button"));
  }
  function toggleHelp(show) {
    if (!help) return;
    var open = show === undefined ? help.hidden : show;
    if (open === !help.hidden) return;
    help.hidden = !open;
    if (open) {
      focusBeforeHelp = document.activeElement;
      helpControls()[0].focus();
    } else {
      var back = focusBeforeHelp;
      focusBeforeHelp = null;
      // Nothing in the now hidden dialog keeps the focus: body.focus() does
      // not move it, and until the browser's own fix-up (a frame later) the
      // next key went to the hidden checkbox, which counts as typing, so "/"
      // pressed right after Escape did nothing.
      if (help.contains(document.activeElement)) document.activeElement.blur();
      if (back && back !== document.body && back.focus) back.focus();
    }
  }
  function keepFocusInHelp(event) {
    var controls = helpControls();
    var first = controls[0];
    var last = controls[controls.length - 1];
    if (event.shiftKey && document.activeElement === first) { last.focus(); event.preventDefault(); }
    else if (!event.shiftKey && document.activeElement === last) { first.focus(); event.preventDefault(); }
    else if (!help.contains(document.activeElement)) { first.focus(); event.preventDefault(); }
  }

  // Single-character shortcuts can be turned off (WCAG 2.1.4): speech input
  // types words whose letters would fire them, and some people press keys by
  // accident. The choice stays in this browser (localStorage).
  var SHORTCUTS_KEY = "bugless.singleKeyShortcuts";
  function shortcutsOn() {
    try { return window.localStorage.getItem(SHORTCUTS_KEY) !== "off"; } catch (e) { return true; }
  }
  var shortcutsToggle = document.getElementById("single-key-shortcuts");
  if (shortcutsToggle) {
    shortcutsToggle.checked = shortcutsOn();
    shortcutsToggle.addEventListener("change", function () {
      try {
        window.localStorage.setItem(SHORTCUTS_KEY, shortcutsToggle.checked ? "on" : "off");
      } catch (e) { /* storage refused: the choice lasts for this page only */ }
    });
  }
  document.addEventListener("click", function (event) {
    var t = event.target;
    if (t.closest && t.closest(".js-help")) { event.preventDefault(); toggleHelp(true); return; }
    if (t.closest && t.closest(".js-help-close")) { toggleHelp(false); return; }
    if (help && t === help) { toggleHelp(false); return; }
    // Clicking a result row (not a link, button or input in it) opens the issue.
    var row = t.closest && t.closest("tr.row[data-href]");
    if (row && !t.closest("a, button, input, select, textarea, label, form")) {
      window.location.assign(row.getAttribute("data-href"));
    }
  });

  // ---- keyboard shortcuts ------------------------------------------------------
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "Escape") {
      if (help && !help.hidden) { toggleHelp(false); return; }
      if (isTyping(event.target)) { event.target.blur(); }
      return;
    }
    if (help && !help.hidden && event.key === "Tab") { keepFocusInHelp(event); return; }
    if (isTyping(event.target)) return;
    if (!shortcutsOn()) return;
    // Enter on a focused link, button or summary is theirs, not "open the selected row".
    if (event.key === "Enter" && event.target.closest && event.target.closest("a, button, summary")) return;
    switch (event.key) {
      case "j": select(selected + 1); break;
      case "k": select(selected < 0 ? 0 : selected - 1); break;
      case "o": case "Enter": if (selected >= 0) { openSelected(event.shiftKey); } else return; break;
      case "O": openSelected(true); break;
      case "x": {
        var row = rows()[selected];
        var box = row && row.querySelector('input[type="checkbox"]');
        if (box) {
          box.checked = !box.checked;
          box.dispatchEvent(new Event("change", { bubbles: true }));
        }
        break;
      }
      case "c": window.location.assign("/issues/new"); break;
      case "/": {
        var q = document.getElementById("q");
        if (q) { q.focus(); q.select(); }
        break;
      }
      case "r": {
        var comment = document.getElementById("comment");
        if (comment) { comment.focus(); comment.scrollIntoView({ block: "center" }); }
        break;
      }
      case "?": toggleHelp(); break;
      default: return;
    }
    event.preventDefault();
  });

  // ---- form problems: focus the first invalid field --------------------------
  // The server marks invalid fields (aria-invalid, described by their message)
  // and gives the first one autofocus; this also scrolls it to the middle of
  // the window, past a sticky header, on browsers that only focus.
  var firstInvalid = document.querySelector('form [aria-invalid="true"]');
  if (firstInvalid) {
    firstInvalid.focus();
    firstInvalid.scrollIntoView({ block: "center" });
  }

  // ---- small form conveniences -----------------------------------------------
  document.querySelectorAll("select.autosubmit").forEach(function (sel) {
    sel.addEventListener("change", function () { if (sel.value !== "") sel.form.submit(); });
  });
  document.querySelectorAll(".js-hide").forEach(function (el) { el.hidden = true; });
  document.querySelectorAll(".js-only").forEach(function (el) { el.hidden = false; });
  document.querySelectorAll(".columns-form").forEach(function (form) {
    var value = form.querySelector(".columns-value");
    form.addEventListener("submit", function () {
      var chosen = Array.prototype.slice.call(form.querySelectorAll(".column-choice:checked"))
        .map(function (box) { return box.value; });
      value.value = chosen.join(",");
    });
  });

  // ---- what compose.js and pages.js use -------------------------------------
  window.bugless = { csrfToken: csrfToken, build: build, reloadOnce: reloadOnce, showTimes: showTimes };
})();
