/* Live updates for the chat page and the staff inbox: no framework, no build step.
 *
 * The page works without this script (plain links and form posts). With it, the page listens
 * to its event stream (data-live-stream) and, on each update, fetches data-live-src and swaps
 * in every [data-live] element by id. A region holding the focused control is left alone, so
 * nobody loses what they are typing. The server sends no text in events, only "something
 * changed", and the fetch goes through the same checks as the page.
 */
(function () {
  "use strict";
  var body = document.body;
  var src = body.getAttribute("data-live-src");
  var streamUrl = body.getAttribute("data-live-stream");
  var lead = body.getAttribute("data-live-lead");

  function scrollThreads() {
    var lists = document.querySelectorAll("[data-scroll]");
    for (var i = 0; i < lists.length; i++) {
      lists[i].scrollTop = lists[i].scrollHeight;
    }
  }

  scrollThreads();
  if (!src || !streamUrl || !window.EventSource || !window.fetch || !window.DOMParser) {
    return;
  }

  function swap(html) {
    var fresh = new DOMParser().parseFromString(html, "text/html");
    var regions = document.querySelectorAll("[data-live]");
    for (var i = 0; i < regions.length; i++) {
      var region = regions[i];
      var replacement = fresh.getElementById(region.id);
      var focused = document.activeElement;
      if (!replacement || (focused && focused !== body && region.contains(focused))) {
        continue;
      }
      region.innerHTML = replacement.innerHTML;
    }
    scrollThreads();
    body.setAttribute("data-live-updates", String(Number(body.getAttribute("data-live-updates") || 0) + 1));
  }

  var busy = false;
  var again = false;
  function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    fetch(src, { credentials: "same-origin", cache: "no-store", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (response.status === 401) {
          window.location.reload(); // signed out meanwhile: show the sign-in page
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html !== null) {
          swap(html);
        }
      })
      .catch(function () {})
      .then(function () {
        busy = false;
        if (again) {
          again = false;
          refresh();
        }
      });
  }

  var stream = new EventSource(streamUrl);
  var connected = false;
  stream.addEventListener("open", function () {
    if (connected) {
      refresh(); // reconnected: an update may have been missed meanwhile
    }
    connected = true;
    body.setAttribute("data-live-state", "connected");
  });
  stream.addEventListener("update", function (event) {
    var data = {};
    try {
      data = JSON.parse(event.data);
    } catch (e) {
      data = {};
    }
    if (lead && data.lead && data.lead !== lead) {
      return;
    }
    refresh();
  });
})();
