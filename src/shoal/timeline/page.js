// The timeline's behaviour: a tooltip on hover, details on click, zoom, and the axis ticks.
// One listener on the chart serves every block (10,000 tests are 10,000 rectangles; a
// listener each would cost more than drawing them). Text is set with textContent only:
// node ids come from the report and may hold anything.
(function () {
  "use strict";
  var chart = document.getElementById("chart");
  var tip = document.getElementById("tip");
  var details = document.getElementById("details");
  var selected = null;

  function describe(el) {
    if (el.dataset.n !== undefined) {
      var t = el.dataset.t.split(" ").map(Number);
      var lane = el.closest(".lane");
      var run = el.closest(".run");
      var total = t[0] + t[1] + t[2];
      var outcome = el.classList[1];
      return {
        node: el.dataset.n,
        text: outcome + " on " + lane.dataset.worker +
          (run && run.dataset.run && document.querySelectorAll(".run").length > 1
            ? " (run " + run.dataset.run + ")" : "") +
          "\nstarted +" + t[3].toFixed(3) + "s, total " + total.toFixed(3) + "s" +
          "\nsetup " + t[0].toFixed(3) + "s · call " + t[1].toFixed(3) + "s · teardown " +
          t[2].toFixed(3) + "s"
      };
    }
    return { node: "", text: el.dataset.tip };
  }

  function target(event) {
    var el = event.target;
    return el && el.closest ? el.closest("[data-n], [data-tip]") : null;
  }

  function show(el, event) {
    var d = describe(el);
    tip.textContent = "";
    if (d.node) {
      var b = document.createElement("b");
      b.textContent = d.node;
      tip.appendChild(b);
      tip.appendChild(document.createTextNode("\n"));
    }
    tip.appendChild(document.createTextNode(d.text));
    tip.hidden = false;
    // Measured at the left edge, where nothing squeezes it, then placed by the pointer.
    tip.style.left = "0px";
    tip.style.top = "0px";
    // clientWidth, not innerWidth: the latter counts the scroll bar the tip cannot use.
    var view = document.documentElement;
    var x = Math.min(event.clientX + 14, view.clientWidth - tip.offsetWidth - 8);
    var y = event.clientY + 16;
    if (y + tip.offsetHeight > view.clientHeight) y = event.clientY - tip.offsetHeight - 10;
    tip.style.left = Math.max(x, 4) + "px";
    tip.style.top = Math.max(y, 4) + "px";
  }

  function select(el) {
    if (selected) selected.classList.remove("sel");
    selected = el;
    var d = describe(el);
    details.textContent = "";
    var node = document.createElement("div");
    node.className = "node";
    node.textContent = d.node || "";
    details.appendChild(node);
    details.appendChild(document.createTextNode(d.text));
    if (el.dataset.n !== undefined) el.classList.add("sel");
  }

  chart.addEventListener("mouseover", function (event) {
    var el = target(event);
    if (el) show(el, event); else tip.hidden = true;
  });
  chart.addEventListener("mousemove", function (event) {
    var el = target(event);
    if (el && !tip.hidden) show(el, event);
  });
  chart.addEventListener("mouseleave", function () { tip.hidden = true; });
  chart.addEventListener("click", function (event) {
    var el = target(event);
    if (el) select(el);
  });

  document.querySelectorAll("tr[data-ref]").forEach(function (row) {
    row.addEventListener("click", function () {
      var el = document.getElementById(row.dataset.ref);
      if (!el) return;
      select(el);
      el.scrollIntoView({ block: "center", inline: "center" });
    });
  });

  // Ticks at 1, 2 or 5 × a power of ten, about every 90 pixels at the current zoom.
  function ticks() {
    document.querySelectorAll(".ticks").forEach(function (box) {
      var span = Number(box.dataset.span);
      var width = box.parentNode.clientWidth;
      if (!(span > 0) || !(width > 0)) return;
      var raw = span / Math.max(width / 90, 1);
      var power = Math.pow(10, Math.floor(Math.log10(raw)));
      var step = [1, 2, 5, 10].map(function (m) { return m * power; })
        .find(function (s) { return s >= raw; });
      var digits = Math.max(0, -Math.floor(Math.log10(step)));
      box.textContent = "";
      // Stop short of the right edge: a label there would be cut in half.
      for (var s = 0; s <= span * 0.97; s += step) {
        var mark = document.createElement("span");
        mark.style.left = (s / span * 100) + "%";
        mark.textContent = s.toFixed(digits) + "s";
        box.appendChild(mark);
      }
    });
  }

  function zoom(factor) {
    var label = chart.querySelector(".lane .label");
    var free = chart.clientWidth - (label ? label.offsetWidth : 0) - 2;
    chart.classList.toggle("zoomed", factor > 1);
    chart.style.setProperty("--track", Math.round(free * factor) + "px");
    document.querySelectorAll(".zoom button").forEach(function (b) {
      b.classList.toggle("on", Number(b.dataset.zoom) === factor);
    });
    ticks();
  }

  var current = 1;
  document.querySelectorAll(".zoom button").forEach(function (button) {
    button.addEventListener("click", function () {
      current = Number(button.dataset.zoom);
      zoom(current);
    });
  });
  window.addEventListener("resize", function () { zoom(current); });
  zoom(1);
})();
