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
      updateListBar();
    });
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
