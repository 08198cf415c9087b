// bugless: progressive enhancement only. Every page works without this file.
// Loaded with `defer` from our own origin (the CSP forbids inline scripts).
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
  var help = document.getElementById("shortcuts");
  function toggleHelp(show) {
    if (!help) return;
    help.hidden = show === undefined ? !help.hidden : !show;
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
    if (isTyping(event.target)) return;
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

  // ---- create form: a component's template without a reload -------------------
  // A field still showing what the previous template put there (its
  // data-template-value) takes the new template's value; a field the person
  // changed keeps theirs. The server applies the same rule without JS.
  var createForm = document.getElementById("create-form");
  if (createForm && createForm.getAttribute("data-template-url")) {
    var picker = createForm.querySelector("#component-picker");
    var shownTemplate = createForm.querySelector('input[name="shown_template"]');
    var about = createForm.querySelector(".component-description");
    var useTemplate = createForm.querySelector('button[name="use_template"]');
    // Removed, not hidden: Enter in a field must create, not re-apply a template.
    if (useTemplate) useTemplate.remove();
    var asking = 0;
    picker.addEventListener("change", function () {
      var ticket = ++asking;
      var url = createForm.getAttribute("data-template-url") + "?component=" + encodeURIComponent(picker.value);
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (data) {
          if (!data || ticket !== asking) return;
          Object.keys(data.values).forEach(function (name) {
            var field = createForm.elements[name];
            if (!field) return;
            var before = field.getAttribute("data-template-value");
            if (field.value === before) field.value = data.values[name];
            field.setAttribute("data-template-value", data.values[name]);
          });
          var custom = document.getElementById("custom-fields");
          if (custom && typeof data.custom_fields_html === "string") {
            // A field of both components keeps what was typed into it.
            var kept = {};
            custom.querySelectorAll("input, select").forEach(function (input) {
              if (input.type === "hidden") return;
              if (input.type === "checkbox") {
                kept[input.name] = kept[input.name] || [];
                if (input.checked) kept[input.name].push(input.value);
              } else { kept[input.name] = input.value; }
            });
            // Rendered and escaped by the server with the page's own template.
            custom.innerHTML = data.custom_fields_html;
            custom.querySelectorAll("input, select").forEach(function (input) {
              if (input.type === "hidden" || !(input.name in kept)) return;
              if (input.type === "checkbox") { input.checked = kept[input.name].indexOf(input.value) !== -1; }
              else { input.value = kept[input.name]; }
            });
          }
          shownTemplate.value = data.component ? String(data.component) : "";
          if (about) {
            about.textContent = data.description;
            about.hidden = !data.description;
          }
          createForm.setAttribute("data-template-loaded", picker.value);
        })
        .catch(function () { /* the server still checks the component on submit */ });
    });
  }

  // ---- Write / Preview tabs on every Markdown text box -------------------------
  // The preview is rendered by the server (POST /preview, CSRF header) with
  // the same renderer and sanitiser as saved text, so it is inserted as is.
  var previewCount = 0;
  document.querySelectorAll("textarea[data-markdown]").forEach(function (area) {
    var n = ++previewCount;
    var tabs = document.createElement("div");
    tabs.className = "md-tabs";
    tabs.setAttribute("role", "tablist");
    var panel = document.createElement("div");
    panel.className = "md-preview markdown";
    panel.id = "md-preview-" + n;
    panel.setAttribute("role", "tabpanel");
    panel.hidden = true;
    if (!area.id) area.id = "md-text-" + n;
    // The tabs go inside the box's <label>: name the text box explicitly, or
    // the label would label its first button instead.
    var label = area.closest("label");
    if (label && !label.htmlFor) label.htmlFor = area.id;
    function tab(label, selected, controls) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "md-tab";
      button.textContent = label;
      button.setAttribute("role", "tab");
      button.setAttribute("aria-selected", selected ? "true" : "false");
      button.setAttribute("aria-controls", controls);
      tabs.appendChild(button);
      return button;
    }
    var write = tab("Write", true, area.id);
    var show = tab("Preview", false, panel.id);
    area.insertAdjacentElement("beforebegin", tabs);
    area.insertAdjacentElement("afterend", panel);
    function choose(previewing) {
      write.setAttribute("aria-selected", previewing ? "false" : "true");
      show.setAttribute("aria-selected", previewing ? "true" : "false");
      area.hidden = previewing;
      panel.hidden = !previewing;
      if (!previewing) area.focus();
    }
    write.addEventListener("click", function () { choose(false); });
    show.addEventListener("click", function () {
      panel.textContent = "Rendering…";
      choose(true);
      fetch("/preview", {
        method: "POST",
        headers: { "X-CSRF-Token": csrfToken, "X-Requested-With": "fetch" },
        body: new URLSearchParams({ text: area.value }),
        credentials: "same-origin",
      }).then(function (response) {
        if (!response.ok) throw new Error(String(response.status));
        return response.text();
      }).then(function (html) {
        panel.innerHTML = html;
      }).catch(function (error) {
        panel.textContent = "The preview could not be rendered (" + error.message + "); your text is unchanged.";
      });
    });
  });

  // ---- attachments: drop or paste files into the comment box --------------------
  // Each file is sent as the raw body of its own request (streamed by the
  // browser and by the server; nothing holds the whole file), with a progress
  // bar. A finished upload adds a Markdown link to the comment being written;
  // the attachment is already on the issue (its own timeline entry).
  document.querySelectorAll(".attach-zone[data-attach-url]").forEach(function (zone) {
    var url = zone.getAttribute("data-attach-url");
    var form = zone.closest("form");
    var area = form ? form.querySelector("textarea[data-attach-url]") : null;
    var list = zone.querySelector(".attach-progress");
    var input = zone.querySelector(".attach-input");
    zone.hidden = false;
    function upload(file, fallbackName) {
      var name = file.name || fallbackName;
      var item = document.createElement("li");
      var label = document.createElement("span");
      label.textContent = name;
      var bar = document.createElement("progress");
      bar.max = 100; bar.value = 0;
      var state = document.createElement("span");
      state.className = "state muted";
      state.textContent = "uploading…";
      item.appendChild(label); item.appendChild(bar); item.appendChild(state);
      list.appendChild(item);
      var xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.setRequestHeader("X-CSRF-Token", csrfToken);
      xhr.setRequestHeader("X-Requested-With", "fetch");
      if (build) xhr.setRequestHeader("X-Bugless-Build", build);
      xhr.setRequestHeader("X-File-Name", encodeURIComponent(name));
      xhr.setRequestHeader("Content-Type", file.type || "application/octet-stream");
      xhr.upload.addEventListener("progress", function (event) {
        if (event.lengthComputable) bar.value = Math.round(100 * event.loaded / event.total);
      });
      xhr.addEventListener("load", function () {
        var answer = {};
        try { answer = JSON.parse(xhr.responseText); } catch (e) { answer = {}; }
        if (xhr.status === 201) {
          bar.value = 100;
          state.textContent = "attached";
          item.classList.add("done");
          item.setAttribute("data-attachment", answer.id);
          if (area) {
            var link = (/^image\//.test(answer.content_type) ? "!" : "") +
              "[" + answer.name.replace(/[\[\]]/g, "") + "](" + answer.url + ")";
            area.value += (area.value && !/\n$/.test(area.value) ? "\n" : "") + link + "\n";
          }
        } else {
          state.textContent = answer.error || ("the upload failed (" + xhr.status + ")");
          state.className = "state failed";
          item.classList.add("failed");
        }
      });
      xhr.addEventListener("error", function () {
        state.textContent = "the upload failed: the connection broke";
        state.className = "state failed";
        item.classList.add("failed");
      });
      xhr.send(file);
    }
    function uploadAll(files, fallbackName) {
      Array.prototype.forEach.call(files, function (file, i) {
        upload(file, fallbackName + (i ? "-" + i : ""));
      });
    }
    if (input) input.addEventListener("change", function () { uploadAll(input.files, "file"); input.value = ""; });
    if (!area) return;
    area.addEventListener("dragover", function (event) {
      if (event.dataTransfer && Array.prototype.indexOf.call(event.dataTransfer.types, "Files") >= 0) {
        event.preventDefault();
        area.classList.add("drop-target");
      }
    });
    area.addEventListener("dragleave", function () { area.classList.remove("drop-target"); });
    area.addEventListener("drop", function (event) {
      area.classList.remove("drop-target");
      if (!event.dataTransfer || !event.dataTransfer.files.length) return;
      event.preventDefault();
      uploadAll(event.dataTransfer.files, "dropped");
    });
    area.addEventListener("paste", function (event) {
      var data = event.clipboardData;
      if (!data || !data.files || !data.files.length) return;
      event.preventDefault();
      var stamp = new Date().toISOString().replace(/[:.]/g, "-");
      uploadAll(data.files, "pasted-" + stamp + ".png");
    });
  });

  // ---- username suggestions (assignee, verifier, CC, ACL) --------------------
  // Fills a <datalist> from /suggest/users as the person types. The fields
  // stay plain text inputs of usernames, so without this nothing is lost.
  // In a multi-name field (CC) the last word is completed and the others kept.
  var suggestCount = 0;
  document.querySelectorAll('input[data-suggest="users"]').forEach(function (input) {
    var multiple = input.getAttribute("data-suggest-multiple") === "true";
    var list = document.createElement("datalist");
    list.id = "suggest-users-" + (++suggestCount);
    input.insertAdjacentElement("afterend", list);
    input.setAttribute("list", list.id);
    var timer = null;
    var asked = "";
    function fill(prefix, kept, people) {
      while (list.firstChild) list.removeChild(list.firstChild);
      people.forEach(function (person) {
        var option = document.createElement("option");
        option.value = kept + person.username;
        // textContent, never HTML: display names are user-controlled.
        option.textContent = person.display_name || person.username;
        list.appendChild(option);
      });
    }
    input.addEventListener("input", function () {
      var value = input.value;
      var kept = "";
      var prefix = value.trim();
      if (multiple) {
        var cut = value.search(/[^\s,]*$/);
        kept = value.slice(0, cut);
        prefix = value.slice(cut);
      }
      window.clearTimeout(timer);
      if (!prefix || value === asked) return;
      timer = window.setTimeout(function () {
        asked = value;
        fetch("/suggest/users?q=" + encodeURIComponent(prefix), {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
        }).then(function (response) {
          return response.ok ? response.json() : [];
        }).then(function (people) {
          if (asked === value) fill(prefix, kept, people);
        }).catch(function () { /* suggestions are a convenience only */ });
      }, 150);
    });
  });

  // ---- @name completion in Markdown text boxes (comments, descriptions) ------
  // Typing "@" and the start of a name lists matching people (from
  // /suggest/users) under the box: ArrowDown/ArrowUp move, Enter or Tab
  // inserts "@username ", Escape closes; a click picks too. The list is an
  // ARIA listbox the text box points at (aria-activedescendant), so screen
  // readers follow it. The text stays plain: without this, typing the whole
  // name works the same. The name grammar is bugless_core.mentions'.
  var mentionCount = 0;
  document.querySelectorAll("textarea[data-markdown]").forEach(function (area) {
    var n = ++mentionCount;
    var list = document.createElement("ul");
    list.className = "mention-list";
    list.id = "mention-list-" + n;
    list.setAttribute("role", "listbox");
    list.setAttribute("aria-label", "People");
    list.hidden = true;
    area.insertAdjacentElement("afterend", list);
    area.setAttribute("aria-autocomplete", "list");
    area.setAttribute("aria-controls", list.id);
    area.setAttribute("aria-expanded", "false");
    var timer = null;
    var active = -1;
    var people = [];
    var token = null; // {start, end, prefix} of the "@prefix" being completed

    function currentToken() {
      var caret = area.selectionStart;
      if (caret !== area.selectionEnd) return null;
      var before = area.value.slice(0, caret);
      var match = /(^|[^\w@.])@([A-Za-z0-9][A-Za-z0-9._-]{0,63})?$/.exec(before);
      if (!match) return null;
      var prefix = match[2] || "";
      return { start: caret - prefix.length - 1, end: caret, prefix: prefix };
    }
    function close() {
      list.hidden = true;
      active = -1;
      people = [];
      area.setAttribute("aria-expanded", "false");
      area.removeAttribute("aria-activedescendant");
    }
    function highlight(index) {
      var items = list.querySelectorAll("li");
      if (!items.length) return;
      active = (index + items.length) % items.length;
      items.forEach(function (item, i) {
        item.setAttribute("aria-selected", i === active ? "true" : "false");
      });
      area.setAttribute("aria-activedescendant", items[active].id);
    }
    function pick(index) {
      var person = people[index];
      if (!person || !token) return;
      var text = "@" + person.username + " ";
      area.value = area.value.slice(0, token.start) + text + area.value.slice(token.end);
      var caret = token.start + text.length;
      area.setSelectionRange(caret, caret);
      close();
      area.dispatchEvent(new Event("input", { bubbles: true }));
      area.focus();
    }
    function show(found) {
      while (list.firstChild) list.removeChild(list.firstChild);
      people = found;
      if (!found.length) { close(); return; }
      found.forEach(function (person, i) {
        var item = document.createElement("li");
        item.id = list.id + "-" + i;
        item.setAttribute("role", "option");
        item.setAttribute("data-username", person.username);
        // textContent, never HTML: display names are user-controlled.
        var name = document.createElement("strong");
        name.textContent = "@" + person.username;
        item.appendChild(name);
        if (person.display_name) {
          var display = document.createElement("span");
          display.className = "muted";
          display.textContent = " " + person.display_name;
          item.appendChild(display);
        }
        item.addEventListener("mousedown", function (event) {
          event.preventDefault(); // keep the focus (and the caret) in the box
          pick(i);
        });
        list.appendChild(item);
      });
      list.hidden = false;
      area.setAttribute("aria-expanded", "true");
      highlight(0);
    }
    area.addEventListener("input", function () {
      var found = currentToken();
      window.clearTimeout(timer);
      if (!found || !found.prefix) { token = null; close(); return; }
      token = found;
      var asked = found.prefix;
      timer = window.setTimeout(function () {
        fetch("/suggest/users?q=" + encodeURIComponent(asked), {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
        }).then(function (response) {
          return response.ok ? response.json() : [];
        }).then(function (found) {
          var still = currentToken();
          if (still && still.prefix === asked) { token = still; show(found); }
        }).catch(function () { /* completion is a convenience only */ });
      }, 120);
    });
    area.addEventListener("keydown", function (event) {
      if (list.hidden) return;
      var handled = true;
      if (event.key === "ArrowDown") highlight(active + 1);
      else if (event.key === "ArrowUp") highlight(active - 1);
      else if ((event.key === "Enter" || event.key === "Tab") && !event.ctrlKey && !event.metaKey) pick(active);
      else if (event.key === "Escape") close();
      else handled = false;
      if (handled) {
        event.preventDefault();
        event.stopPropagation();
      }
    });
    area.addEventListener("blur", function () { window.setTimeout(close, 150); });
  });

  // ---- hotlist drag-and-drop re-rank ----------------------------------------
  var ranked = document.querySelector('table.ranked[data-rankable="true"] tbody');
  if (ranked) {
    var hotlistId = document.querySelector(".hotlist").getAttribute("data-hotlist");
    var dragged = null;
    ranked.addEventListener("dragstart", function (event) {
      dragged = event.target.closest("tr.row");
      if (!dragged) return;
      dragged.classList.add("dragging");
      event.dataTransfer.effectAllowed = "move";
      event.dataTransfer.setData("text/plain", dragged.getAttribute("data-issue"));
    });
    ranked.addEventListener("dragover", function (event) {
      var over = event.target.closest("tr.row");
      if (!dragged || !over || over === dragged) return;
      event.preventDefault();
      ranked.querySelectorAll(".drop-target").forEach(function (r) { r.classList.remove("drop-target"); });
      over.classList.add("drop-target");
    });
    ranked.addEventListener("dragend", function () {
      if (dragged) dragged.classList.remove("dragging");
      ranked.querySelectorAll(".drop-target").forEach(function (r) { r.classList.remove("drop-target"); });
      dragged = null;
    });
    ranked.addEventListener("drop", function (event) {
      var over = event.target.closest("tr.row");
      if (!dragged || !over || over === dragged) return;
      event.preventDefault();
      var all = Array.prototype.slice.call(ranked.querySelectorAll("tr.row"));
      var position = all.indexOf(over) + 1;
      var issue = dragged.getAttribute("data-issue");
      var body = new URLSearchParams({ position: String(position), _csrf: csrfToken });
      fetch("/hotlists/" + hotlistId + "/items/" + issue + "/rank", {
        method: "POST",
        headers: { "X-CSRF-Token": csrfToken, "X-Requested-With": "fetch" },
        body: body,
        credentials: "same-origin",
      }).then(function (response) {
        // Reload to show the ranks the server now holds (the source of truth).
        if (response.ok) { window.location.reload(); }
        else { window.alert("Could not move the issue (" + response.status + ")."); }
      });
    });
  }

  // ---- "edited": the mark opens the earlier versions it links to ---------------
  document.addEventListener("click", function (event) {
    var mark = event.target.closest ? event.target.closest("a.edited-mark") : null;
    if (!mark) return;
    var versions = document.getElementById(mark.getAttribute("href").slice(1));
    if (versions && versions.tagName === "DETAILS") { versions.open = true; }
  });

  // ---- live updates on the issue page -----------------------------------------
  var issue = document.querySelector(".issue[data-live]");
  if (issue && window.EventSource) {
    var entries = document.getElementById("entries");
    var notice = document.getElementById("live-notice");
    var shownVersion = parseInt(issue.getAttribute("data-version"), 10);
    var live = issue.getAttribute("data-live");
    var source = new EventSource(live + (live.indexOf("?") === -1 ? "?" : "&") + "_build=" +
      encodeURIComponent(build));
    source.addEventListener("reload", function (event) {
      source.close();
      reloadOnce(event.data || "unknown");
    });
    source.addEventListener("entry", function (event) {
      var data = JSON.parse(event.data);
      if (document.getElementById("entry-" + data.version)) return;
      // The HTML was rendered and sanitised by the server with the page's own template.
      entries.insertAdjacentHTML("beforeend", data.html);
      var added = document.getElementById("entry-" + data.version);
      if (added) { added.classList.add("fresh"); showTimes(added); }
      if (data.version > shownVersion && notice) {
        notice.hidden = false;
        notice.textContent = "This issue changed since you opened it (now version " + data.version +
          "). If you save your edit, you will first see what changed.";
      }
    });
  }
})();
