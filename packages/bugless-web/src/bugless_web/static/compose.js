// bugless: writing — a component's template on the create form, Write/Preview
// tabs, attachments dropped or pasted into a comment, username suggestions and
// @name completion. Progressive enhancement only; loaded with `defer` after
// app.js, whose `window.bugless` it uses (the CSRF token and the page's build).
(function () {
  "use strict";

  var csrfToken = window.bugless.csrfToken;
  var build = window.bugless.build;

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
    var versionField = form ? form.querySelector('input[name="version"]') : null;
    var ownVersions = {};
    // Save pressed while files still go up would leave with the comment as it
    // is: without the links the uploads add, and the page's navigation cuts
    // the uploads still running, so a file the comment speaks of may never
    // be attached. The save waits for them instead (one status line says so)
    // and goes ahead once all are attached; if one fails, nothing is saved
    // and the line says why, with the comment kept as typed.
    var running = 0;
    var waiting = null;
    var waitLine = document.createElement("p");
    waitLine.className = "attach-wait muted";
    waitLine.setAttribute("role", "status");
    zone.appendChild(waitLine);
    function sayWaiting() {
      waitLine.className = "attach-wait muted";
      waitLine.textContent = running === 1
        ? "Saving once the upload finishes…"
        : "Saving once the " + running + " uploads finish…";
    }
    function uploadEnded(ok) {
      running -= 1;
      if (!waiting) return;
      if (!ok) waiting.failed = true;
      if (running > 0) { sayWaiting(); return; }
      var submitter = waiting.submitter;
      var failed = waiting.failed;
      waiting = null;
      if (failed) {
        waitLine.className = "attach-wait failed";
        waitLine.textContent = "Not saved: an upload failed (see above). " +
          "Save again to save without it.";
        return;
      }
      waitLine.textContent = "Saving…";
      if (form.requestSubmit) { form.requestSubmit(submitter || undefined); } else { form.submit(); }
    }
    if (form) {
      form.addEventListener("submit", function (event) {
        if (running === 0) return;
        event.preventDefault();
        waiting = { submitter: event.submitter || null, failed: (waiting && waiting.failed) || false };
        sayWaiting();
      });
    }
    zone.hidden = false;
    // Each upload is a history entry of its own: a new issue version. The form
    // still names the version it was rendered at, so saving the comment the
    // upload linked into would be refused as stale although only this page's
    // own uploads came between. Move the form past those versions, and only
    // those: a change made by anyone else stays in between, and saving still
    // shows it first.
    function passOwnVersion(version) {
      if (!versionField || !version) return;
      ownVersions[version] = true;
      var at = parseInt(versionField.value, 10);
      var moved = false;
      while (ownVersions[at + 1]) { at += 1; moved = true; }
      if (!moved) return;
      versionField.value = String(at);
      document.dispatchEvent(new CustomEvent("bugless:form-version", { detail: at }));
    }
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
      running += 1;
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
          passOwnVersion(parseInt(answer.version, 10));
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
        uploadEnded(xhr.status === 201);
      });
      xhr.addEventListener("error", function () {
        state.textContent = "the upload failed: the connection broke";
        state.className = "state failed";
        item.classList.add("failed");
        uploadEnded(false);
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

  // The people whose username, display name or email starts with `prefix`, from
  // /suggest/users (the Authenticator's SuggestUsers); none when it refuses.
  function suggestPeople(prefix) {
    return fetch("/suggest/users?q=" + encodeURIComponent(prefix), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    }).then(function (response) {
      return response.ok ? response.json() : [];
    });
  }

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
    // data-suggest-when="NAME=VALUE": suggest people only while the form's
    // control NAME says VALUE (the ACL add row: a group name is no person's).
    var when = (input.getAttribute("data-suggest-when") || "").split("=");
    var whenControl = when[0] && input.form ? input.form.elements[when[0]] : null;
    function wanted() {
      return !whenControl || whenControl.value === when[1];
    }
    if (whenControl) {
      whenControl.addEventListener("change", function () {
        if (!wanted()) { asked = ""; fill("", "", []); }  // no stale names under a group
      });
    }
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
      if (!wanted()) {
        asked = "";
        fill("", "", []);
        return;
      }
      if (!prefix || value === asked) return;
      timer = window.setTimeout(function () {
        asked = value;
        suggestPeople(prefix).then(function (people) {
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
  // readers follow it; a polite status says when it opens (a multi-line text
  // box may not carry aria-expanded: axe's aria-allowed-attr, critical). The
  // text stays plain: without this, typing the whole name works the same.
  // The name grammar is bugless_core.mentions' (any script; a test holds
  // this copy to bugless_core.usernames' rule).
  var MENTION_BEFORE_CARET =
    /(^|[^\p{L}\p{N}\p{M}_@.])@([\p{L}\p{N}][\p{L}\p{N}\p{M}._@+-]{0,127})?$/u;
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
    var status = document.createElement("span");
    status.className = "visually-hidden mention-status";
    status.setAttribute("role", "status");
    list.insertAdjacentElement("afterend", status);
    area.setAttribute("aria-autocomplete", "list");
    area.setAttribute("aria-controls", list.id);
    var timer = null;
    var active = -1;
    var people = [];
    var token = null; // {start, end, prefix} of the "@prefix" being completed

    function currentToken() {
      var caret = area.selectionStart;
      if (caret !== area.selectionEnd) return null;
      var before = area.value.slice(0, caret);
      var match = MENTION_BEFORE_CARET.exec(before);
      if (!match) return null;
      var prefix = match[2] || "";
      return { start: caret - prefix.length - 1, end: caret, prefix: prefix };
    }
    function close() {
      list.hidden = true;
      active = -1;
      people = [];
      status.textContent = "";
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
      status.textContent = found.length + (found.length === 1 ? " person matches" : " people match") +
        ": arrow keys choose, Enter inserts, Escape closes";
      highlight(0);
    }
    area.addEventListener("input", function () {
      var found = currentToken();
      window.clearTimeout(timer);
      if (!found || !found.prefix) { token = null; close(); return; }
      token = found;
      var asked = found.prefix;
      timer = window.setTimeout(function () {
        suggestPeople(asked).then(function (found) {
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
})();
