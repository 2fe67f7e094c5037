// Charts of the reports page, drawn with the vendored Chart.js from the JSON the server embedded.
// The numbers are also in the tables beside each chart, so the page reads without JavaScript.
(function () {
  "use strict";
  var node = document.getElementById("chart-data");
  if (!node || typeof Chart === "undefined") return;
  var data = JSON.parse(node.textContent);
  var colours = ["#2563eb", "#f59e0b", "#16a34a", "#dc2626"];
  Object.keys(data).forEach(function (key) {
    var canvas = document.getElementById("chart-" + key);
    if (!canvas) return;
    var spec = data[key];
    var scales = { y: { beginAtZero: true } };
    if (spec.max) scales.y.max = spec.max;
    new Chart(canvas, {
      type: spec.type,
      data: {
        labels: spec.labels,
        datasets: spec.series.map(function (s, i) {
          return { label: s.label, data: s.data, backgroundColor: colours[i % colours.length] };
        })
      },
      options: { responsive: true, maintainAspectRatio: false, animation: false, scales: scales }
    });
    canvas.setAttribute("data-drawn", "true");
  });
})();
