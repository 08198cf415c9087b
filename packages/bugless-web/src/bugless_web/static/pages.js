// bugless: behaviour of particular pages — the hotlist's drag-and-drop re-rank,
// the "edited" mark, and live updates on the issue page and on lists. Progressive
// enhancement only; loaded with `defer` after app.js, whose `window.bugless` it
// uses (the CSRF token, the build, reloadOnce and showTimes).
(function () {
  "use strict";

  var csrfToken = window.bugless.csrfToken;
  var build = window.bugless.build;
  var reloadOnce = window.bugless.reloadOnce;
  var showTimes = window.bugless.showTimes;

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
    var latestVersion = shownVersion;
    var formVersion = document.querySelector('#issue-form input[name="version"]');
    // The notice says a save would first show a conflict: the issue is past the
    // version the edit form names. The person's own uploads from this page move
    // the form on (compose.js, "bugless:form-version"), so they never raise it.
    function updateNotice() {
      if (!notice) return;
      var editing = formVersion ? parseInt(formVersion.value, 10) : shownVersion;
      if (latestVersion > editing) {
        notice.hidden = false;
        notice.textContent = "This issue changed since you opened it (now version " + latestVersion +
          "). If you save your edit, you will first see what changed.";
      } else {
        notice.hidden = true;
      }
    }
    document.addEventListener("bugless:form-version", updateNotice);
    source.addEventListener("entry", function (event) {
      var data = JSON.parse(event.data);
      if (document.getElementById("entry-" + data.version)) return;
      // The HTML was rendered and sanitised by the server with the page's own template.
      entries.insertAdjacentHTML("beforeend", data.html);
      var added = document.getElementById("entry-" + data.version);
      if (added) { added.classList.add("fresh"); showTimes(added); }
      latestVersion = Math.max(latestVersion, data.version);
      updateNotice();
    });
  }

  // ---- a hotlist's rows, drawn again as they are now ---------------------------
  // Re-ranks and notes change the hotlist, not its issues, so no event says
  // they happened: the rows are asked for every ROWS_POLL_MS while the page is
  // shown (a 304 while nothing changed: the ETag), and at once when the live
  // list hears an issue change; that ask sends no If-None-Match, since the
  // server's ETag follows the hotlist's version, which an issue's change
  // does not move (a poll costs it one read). A note being typed in is never lost: while one
  // has the focus, or a row is dragged, the redraw waits; a note typed and not
  // saved keeps its text in the redrawn row. Rows marked by the live list keep
  // their mark, and a row that left the hotlist stays, faded, until Refresh.
  var ROWS_POLL_MS = 10000;
  var hotlistRows = null;
  var rowsSection = document.querySelector(".hotlist[data-rows-url]");
  var rowsBody = rowsSection ? rowsSection.querySelector("table.ranked tbody") : null;
  if (rowsBody && window.fetch) {
    hotlistRows = (function () {
      var url = rowsSection.getAttribute("data-rows-url");
      var tag = null, waiting = false, waitingFresh = false, timer = null, soon = null;
      var stopped = false;
      var api = { markOf: function () { return null; } };
      function busy() {
        var active = document.activeElement;
        return (active && rowsBody.contains(active) && active.name === "note") ||
          !!rowsBody.querySelector("tr.dragging");
      }
      function rowOf(root, id) { return root.querySelector('tr.row[data-issue="' + id + '"]'); }
      function apply(html) {
        var holder = document.createElement("tbody");
        holder.innerHTML = html;  // rendered and escaped by the server, as the page's rows
        var fresh = Array.prototype.slice.call(holder.querySelectorAll("tr.row"));
        var freshIds = {};
        fresh.forEach(function (row) { freshIds[row.getAttribute("data-issue")] = true; });
        var old = Array.prototype.slice.call(rowsBody.querySelectorAll("tr.row"));
        fresh.forEach(function (row) {
          var id = row.getAttribute("data-issue");
          var before = rowOf(rowsBody, id);
          var typed = before ? before.querySelector('input[name="note"]') : null;
          var input = row.querySelector('input[name="note"]');
          if (typed && input && typed.value !== typed.defaultValue) input.value = typed.value;
          var mark = api.markOf(id);
          if (mark) {
            row.classList.add(mark === "left" ? "live-left" : "live-changed");
            row.setAttribute("title", mark === "left" ? "Left this list since the page was made" :
              "Changed since the page was made");
          }
        });
        // Rows that left the hotlist stay where they were, after the row before them.
        var body = document.createDocumentFragment();
        var placed = {};
        fresh.forEach(function (row) { placed[row.getAttribute("data-issue")] = row; });
        var leftAfter = {};  // issue id of the row before (or "") -> rows that left
        var previous = "";
        old.forEach(function (row) {
          var id = row.getAttribute("data-issue");
          if (freshIds[id]) { previous = id; return; }
          (leftAfter[previous] = leftAfter[previous] || []).push(row);
        });
        (leftAfter[""] || []).forEach(function (row) { body.appendChild(row); });
        fresh.forEach(function (row) {
          body.appendChild(row);
          (leftAfter[row.getAttribute("data-issue")] || []).forEach(function (r) { body.appendChild(r); });
        });
        Object.keys(leftAfter).forEach(function (id) {
          if (id && !placed[id]) leftAfter[id].forEach(function (r) { body.appendChild(r); });
        });
        if (!fresh.length && !old.some(function (row) { return !freshIds[row.getAttribute("data-issue")]; })) {
          rowsBody.innerHTML = html;  // the empty hotlist's one line
        } else {
          rowsBody.replaceChildren(body);
        }
      }
      // The owner line's count and the "Version N · last changed" small print
      // say what the rows answer says, whoever changed it: they are the
      // hotlist's, drawn with its rows (a rename is for a reload to show).
      function drawSummary(state) {
        if (!state || typeof state.version !== "number") return;
        var count = rowsSection.querySelector(".hotlist-count");
        if (count) count.textContent = state.item_count + (state.item_count === 1 ? " issue" : " issues");
        var search = rowsSection.querySelector(".hotlist-search-link");
        if (search) search.hidden = !state.item_count;
        var version = rowsSection.querySelector(".hotlist-version");
        if (version) version.textContent = String(state.version);
        var when = rowsSection.querySelector(".hotlist-changed time[datetime]");
        if (when && typeof state.modified_at === "string" && state.modified_at !== when.getAttribute("datetime")) {
          // As the server writes it (display.timestamp), then in words as app.js shows every time.
          when.setAttribute("datetime", state.modified_at);
          when.setAttribute("title", state.modified_at);
          when.textContent = state.modified_at.slice(0, 10) + " " + state.modified_at.slice(11, 16) + " UTC";
          showTimes(when.parentNode);
        }
      }
      // The rename and delete forms carry the version they were drawn at, and a
      // re-rank, an item added or removed or a note moves it. Their version is
      // brought up to date from the rows answer, but only while the form is as
      // drawn (no one has typed in it or ticked it) and the hotlist's name and
      // description are still what it shows: a colleague's rename must leave
      // a rename or delete from this page refused as stale, not let it
      // overwrite theirs or delete what it no longer names. The delete form's
      // count of issues follows, so it confirms what is on the list now.
      var hotlistForms = Array.prototype.slice.call(
        rowsSection.querySelectorAll("form.edit-hotlist, form.delete-hotlist"));
      hotlistForms.forEach(function (form) {
        function edited() { form.setAttribute("data-edited", "true"); }
        form.addEventListener("input", edited);
        form.addEventListener("change", edited);
      });
      function refreshForms(state) {
        if (!state || typeof state.version !== "number") return;
        if (state.name !== rowsSection.getAttribute("data-name") ||
            state.description !== rowsSection.getAttribute("data-description")) return;
        hotlistForms.forEach(function (form) {
          if (form.hasAttribute("data-edited")) return;
          form.querySelector('input[name="version"]').value = String(state.version);
          var count = form.querySelector(".item-count");
          if (count) count.textContent = String(state.item_count);
        });
      }
      // fresh: an issue changed; its rows are drawn whatever the ETag says.
      function load(fresh) {
        if (stopped) return;
        if (busy()) { waiting = true; waitingFresh = waitingFresh || !!fresh; return; }
        fresh = fresh || waitingFresh;
        waiting = false;
        waitingFresh = false;
        var headers = { Accept: "text/html" };
        if (tag && !fresh) headers["If-None-Match"] = tag;
        fetch(url, { credentials: "same-origin", headers: headers, cache: "no-store" })
          .then(function (response) {
            if (response.status === 304) return null;
            // A Model or web restarting (5xx), or too many requests: the next poll asks again.
            if (response.status >= 500 || response.status === 429) return null;
            if (response.status !== 200) { stopped = true; return null; }  // gone, or not theirs now
            var answer = { tag: response.headers.get("ETag"), state: null };
            try { answer.state = JSON.parse(response.headers.get("X-Bugless-Hotlist") || "null"); }
            catch (e) { answer.state = null; }
            return response.text().then(function (html) { answer.html = html; return answer; });
          })
          .then(function (answer) {
            if (answer === null) return;
            // Not drawn: the ETag is kept only for what was drawn, or the next ask is a 304.
            if (busy()) { waiting = true; waitingFresh = true; return; }
            tag = answer.tag;
            apply(answer.html);
            refreshForms(answer.state);
            drawSummary(answer.state);
            // Every answer drawn, an empty hotlist's too: when the page last showed the server's rows.
            rowsSection.setAttribute("data-rows-drawn", String(Date.now()));
          })
          .catch(function () { /* the next poll asks again */ });
      }
      function loadWaiting() { load(false); }
      rowsBody.addEventListener("focusout", function () {
        if (waiting) window.setTimeout(loadWaiting, 0);
      });
      rowsBody.addEventListener("dragend", function () {
        if (waiting) window.setTimeout(loadWaiting, 0);
      });
      function poll() {
        window.clearTimeout(timer);
        timer = window.setTimeout(function () {
          if (document.visibilityState === "visible") load(false);
          poll();
        }, ROWS_POLL_MS);
      }
      document.addEventListener("visibilitychange", function () {
        if (document.visibilityState === "visible") { load(false); poll(); }
      });
      poll();
      // An issue on the page changed: draw the rows now (several events, one fetch).
      api.soon = function () {
        window.clearTimeout(soon);
        soon = window.setTimeout(function () { load(true); }, 150);
      };
      return api;
    })();
  }

  // ---- live lists: which issues changed in, or left, a search's list or a hotlist
  // The stream says only which issue and whether it left (the Model judged
  // what the viewer may see); the page counts issues, not events (a resumed
  // stream may send one again), marks the rows it shows and offers a refresh,
  // which re-runs the search for everything else.
  var list = document.querySelector(".search[data-live], .hotlist[data-live]");
  var listBar = document.getElementById("list-live");
  if (list && listBar && window.EventSource) {
    var listLive = list.getAttribute("data-live");
    var listSource = new EventSource(listLive + (listLive.indexOf("?") === -1 ? "?" : "&") +
      "_build=" + encodeURIComponent(build));
    var heard = {};  // issue id -> "changed" or "left", the last word on it
    var stale = false;
    var what = listBar.querySelector(".what");
    listBar.querySelector(".refresh").addEventListener("click", function () {
      window.location.reload();
    });
    function plural(count, one, many) { return count + " " + (count === 1 ? one : many); }
    function updateListBar() {
      var changed = 0, left = 0;
      Object.keys(heard).forEach(function (id) {
        if (heard[id] === "left") { left += 1; } else { changed += 1; }
      });
      var parts = [];
      if (changed) parts.push(plural(changed, "issue changed", "issues changed"));
      if (left) parts.push(plural(left, "issue left this list", "issues left this list"));
      if (stale && !parts.length) parts.push("This list may have changed while the page was not connected");
      if (!parts.length) { listBar.hidden = true; return; }
      what.textContent = parts.join(", ") + ".";
      listBar.hidden = false;
    }
    listSource.addEventListener("subscribed", function () { list.setAttribute("data-live-state", "watching"); });
    listSource.addEventListener("reload", function (event) {
      listSource.close();
      reloadOnce(event.data || "unknown");
    });
    listSource.addEventListener("issue", function (event) {
      var data = JSON.parse(event.data);
      var id = String(data.issue);
      heard[id] = data.left ? "left" : "changed";
      var row = list.querySelector('tr.row[data-href="/issues/' + id + '"]');
      if (row) {
        markRow(row, !!data.left);
        if (!data.left && rowUrl) redrawRow(id);
      }
      if (hotlistRows) hotlistRows.soon();
      updateListBar();
    });
    if (hotlistRows) hotlistRows.markOf = function (id) { return heard[id] || null; };
    function markRow(row, left) {
      row.classList.toggle("live-left", left);
      row.classList.toggle("live-changed", !left);
      row.setAttribute("title", left ? "Left this list since the page was made" :
        "Changed since the page was made");
    }
    // A changed row of a search page is drawn again as it is now, in place
    // (the server writes it as the page's rows: /search/row); its check box
    // comes back unticked at the new version, so a bulk edit cannot overwrite
    // the change unseen. Where it now sorts is for Refresh to say.
    var rowUrl = list.getAttribute("data-row-url");
    var drawing = {};  // issue id -> the latest redraw asked for
    function redrawRow(id) {
      var ticket = (drawing[id] || 0) + 1;
      drawing[id] = ticket;
      fetch(rowUrl + "&issue=" + encodeURIComponent(id),
        { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) { return response.status === 200 ? response.text() : null; })
        .then(function (html) {
          var current = list.querySelector('tr.row[data-href="/issues/' + id + '"]');
          if (!html || !current || drawing[id] !== ticket || heard[id] !== "changed") return;
          var holder = document.createElement("tbody");
          holder.innerHTML = html;  // rendered and escaped by the server
          var fresh = holder.querySelector('tr.row[data-href="/issues/' + id + '"]');
          if (!fresh) return;
          markRow(fresh, false);
          current.replaceWith(fresh);
          var box = fresh.querySelector('input[name="issue"]');
          if (box) box.dispatchEvent(new Event("change", { bubbles: true }));  // the bar's count
        })
        .catch(function () { /* the row stays marked: Refresh shows it */ });
    }
    listSource.addEventListener("stale", function () { stale = true; updateListBar(); });
    listSource.addEventListener("ended", function (event) {
      // The Model no longer watches this query (a field it names was deleted).
      listSource.close();
      what.textContent = "This list stopped following changes: " + event.data;
      listBar.hidden = false;
    });
    listSource.addEventListener("behind", function () {
      // Too much changed to follow: the bar stays, and a refresh shows it all.
      listSource.close();
      stale = true;
      what.textContent = "This list changed more than the page can follow.";
      listBar.hidden = false;
    });
  }
})();
