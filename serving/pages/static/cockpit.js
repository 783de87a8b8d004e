// The cockpit's small enhancements: a loading state, the live what-if, the report frame.
// Every number is also readable without this script (the pages are rendered on the server).
(function () {
  "use strict";
  var loading = document.getElementById("loading");
  var timer = null;
  function showLoadingSoon() {
    // only for what takes longer than ~0.3 s: a quick page never flashes it
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(function () { loading.hidden = false; }, 300);
  }
  window.addEventListener("pageshow", function () {
    if (timer) { clearTimeout(timer); }
    loading.hidden = true;
  });
  document.addEventListener("click", function (event) {
    var link = event.target.closest("a");
    if (!link || link.target || link.hasAttribute("download") || event.ctrlKey ||
        event.metaKey || link.origin !== window.location.origin ||
        link.pathname.endsWith(".csv") || link.getAttribute("href").charAt(0) === "#") {
      return;
    }
    showLoadingSoon();
  });
  document.addEventListener("submit", function (event) {
    if (event.target.id !== "whatif") { showLoadingSoon(); }
  });

  var whatif = document.getElementById("whatif");
  if (whatif) {
    var pending = null;
    function score(event) {
      if (event) { event.preventDefault(); }
      var query = new URLSearchParams(new FormData(whatif)).toString();
      var result = document.getElementById("whatif-result");
      var slow = setTimeout(function () { result.classList.add("pending"); }, 300);
      var controller = new AbortController();
      if (pending) { pending.abort(); }
      pending = controller;
      fetch(whatif.dataset.fragment + "?" + query, {signal: controller.signal,
                                                    credentials: "same-origin"})
        .then(function (response) { return response.text(); })
        .then(function (html) {
          clearTimeout(slow);
          var holder = document.createElement("div");
          holder.innerHTML = html;
          var fresh = holder.querySelector("#whatif-result");
          if (fresh) { result.replaceWith(fresh); } else { result.classList.remove("pending"); }
          history.replaceState(null, "", whatif.getAttribute("action") + "?" + query);
        })
        .catch(function (error) {
          clearTimeout(slow);
          if (error.name !== "AbortError") {
            result.classList.remove("pending");
            result.textContent = "Could not score the change: " + error.message;
          }
        });
    }
    whatif.addEventListener("submit", score);
    whatif.addEventListener("change", score);
  }

  var figure = document.getElementById("forecast-figure");
  if (figure && window.Plotly) {
    var spec = JSON.parse(figure.textContent);
    window.Plotly.newPlot("forecast-chart", spec.data, spec.layout,
                          {displaylogo: false, responsive: true});
  }

  var report = document.getElementById("report");
  var reportLoading = document.getElementById("report-loading");
  if (report && reportLoading) {
    report.addEventListener("load", function () { reportLoading.hidden = true; });
  }
})();
