// Charts of the insight, what-if and policy pages, drawn with the vendored Chart.js from the JSON the
// server embedded (#insight-data). Every number is also in the tables beside the charts.
(function () {
  "use strict";
  var node = document.getElementById("insight-data");
  if (!node || typeof Chart === "undefined") return;
  var data = JSON.parse(node.textContent);
  var colours = ["#2563eb", "#f59e0b", "#16a34a", "#dc2626", "#7c3aed"];
  Object.keys(data).forEach(function (key) {
    var canvas = document.getElementById("chart-" + key);
    if (!canvas) return;
    var spec = data[key];
    // "interval": floating horizontal bars from the lower to the upper end of a 95 % interval.
    var interval = spec.type === "interval";
    var valueAxis = interval ? "x" : "y";
    var scales = {};
    scales[valueAxis] = { beginAtZero: true };
    if (spec.max) scales[valueAxis].max = spec.max;
    new Chart(canvas, {
      type: interval ? "bar" : spec.type,
      data: {
        labels: spec.labels,
        datasets: spec.series.map(function (s, i) {
          return { label: s.label, data: s.data, backgroundColor: colours[i % colours.length],
                   borderColor: colours[i % colours.length], spanGaps: true };
        })
      },
      options: { responsive: true, maintainAspectRatio: false, animation: false, scales: scales,
                 indexAxis: interval ? "y" : "x" }
    });
    canvas.setAttribute("data-drawn", "true");
  });
})();
