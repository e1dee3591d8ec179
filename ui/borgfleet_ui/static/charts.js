// The server page's history charts (uPlot, vendored): one per figure of #charts' data-history, in the
// theme's colours, drawn again when the theme or the width changes.
(function () {
  function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }
  function draw() {
    var source = document.getElementById('charts');
    if (!source || !source.dataset.history || !window.uPlot) { return; }
    var data = JSON.parse(source.dataset.history);
    var text = css('--bs-body-color'), grid = css('--bs-border-color'), line = css('--bs-primary');
    document.querySelectorAll('.chart[data-series]').forEach(function (box) {
      box.textContent = '';
      var unit = box.dataset.unit;
      var axis = { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } };
      var opts = {
        title: box.dataset.title, width: Math.max(200, box.clientWidth - 16), height: 160,
        series: [{}, { label: box.dataset.title, stroke: line, width: 2, fill: line + '22', spanGaps: true,
                       value: function (u, v) { return v == null ? '—' : v.toFixed(unit ? 1 : 2) + (unit ? ' ' + unit : ''); } }],
        axes: [axis, Object.assign({ size: 50, values: function (u, vals) { return vals.map(function (v) { return v + (unit ? unit : ''); }); } }, axis)],
        scales: unit ? { y: { range: [0, 100] } } : {}
      };
      new uPlot(opts, [data.t, data[box.dataset.series]], box);
      box.querySelector('.u-title').style.color = text;
    });
  }
  document.addEventListener('DOMContentLoaded', function () {
    draw();
    new MutationObserver(draw).observe(document.documentElement, { attributes: true, attributeFilter: ['data-bs-theme'] });
    var timer;
    window.addEventListener('resize', function () { clearTimeout(timer); timer = setTimeout(draw, 200); });
  });
})();
