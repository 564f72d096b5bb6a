// Keyboard shortcuts of the review queue (documented on the page): j/k next/previous case,
// o or Enter open it, a accept it, / go to the filters, ? show the list. Without this script
// every action is still a link or a button reachable with Tab.
(function () {
  "use strict";
  var list = document.querySelector(".queue");
  var rows = list ? Array.prototype.slice.call(list.querySelectorAll("[data-case-row]")) : [];
  var current = -1;

  function select(i, focus) {
    if (!rows.length) { return; }
    i = Math.max(0, Math.min(rows.length - 1, i));
    rows.forEach(function (r) { r.classList.remove("current"); r.removeAttribute("aria-current"); });
    rows[i].classList.add("current");
    rows[i].setAttribute("aria-current", "true");
    current = i;
    if (focus) { rows[i].focus(); rows[i].scrollIntoView({ block: "nearest" }); }
  }

  if (rows.length) {
    var start = parseInt(list.getAttribute("data-focus") || "0", 10) || 0;
    var asked = /[?&]focus=/.test(window.location.search);
    select(start, asked);
    rows.forEach(function (r, i) { r.addEventListener("focusin", function () { select(i, false); }); });
  }

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing) { return; }
    var t = e.target;
    if (t && t.closest && t.closest("input, textarea, select, [contenteditable]")) { return; }
    var help = document.getElementById("shortcuts");
    if (e.key === "?" && help) { help.open = !help.open; e.preventDefault(); return; }
    if (e.key === "/") {
      var first = document.querySelector(".filters select");
      if (first) { first.focus(); e.preventDefault(); }
      return;
    }
    if (!rows.length) { return; }
    var row = rows[current < 0 ? 0 : current];
    if (e.key === "j") { select(current + 1, true); e.preventDefault(); }
    else if (e.key === "k") { select(current - 1, true); e.preventDefault(); }
    else if (e.key === "o" || (e.key === "Enter" && t === row)) {
      var open = row.querySelector("a[data-open]");
      if (open) { e.preventDefault(); open.click(); }
    } else if (e.key === "a") {
      var form = row.querySelector("form[data-accept]");
      if (form) {
        e.preventDefault();
        if (form.requestSubmit) { form.requestSubmit(); } else { form.submit(); }
      }
    }
  });
})();
