// The backup wizard's schedule step: the next five runs follow the preset chosen, the cron expression
// and the time zone as they are typed (GET /api/schedules/next-runs, the scheduler's own computation).
// Without JavaScript the "Show next runs" button asks the server for the same list.
(function () {
  var box = document.getElementById('next-runs');
  var form = document.getElementById('wizard-form');
  if (!box || !form) { return; }
  var cron = document.getElementById('w-cron');
  var tz = document.getElementById('w-tz');
  var timer = null;

  function chosenCron() {
    var preset = form.querySelector('input[name=schedule_preset]:checked');
    if (!preset) { return ''; }
    return preset.value === 'custom' ? cron.value.trim() : preset.dataset.cron;
  }

  function show(nodes) {
    box.replaceChildren.apply(box, nodes);
  }

  function note(text, cls, id) {
    var p = document.createElement('p');
    p.className = 'small mb-0 ' + cls;
    p.id = id;
    p.textContent = text;
    return p;
  }

  function refresh() {
    var expr = chosenCron();
    if (!expr) {
      // The texts come from the page (data-type-cron, data-by-hand), in its language.
      show([note(form.querySelector('#sp-custom:checked') ? box.dataset.typeCron : box.dataset.byHand,
                 'text-body-secondary', 'runs-none')]);
      return;
    }
    var url = box.dataset.api + '?cron=' + encodeURIComponent(expr) + '&timezone=' + encodeURIComponent(tz.value.trim() || 'UTC');
    fetch(url, {credentials: 'same-origin'})
      .then(function (r) { return r.json().then(function (j) { return {ok: r.ok, body: j}; }); })
      .then(function (res) {
        if (!res.ok) { show([note(res.body.error, 'text-danger', 'runs-error')]); return; }
        var ol = document.createElement('ol');
        ol.className = 'small mb-0';
        ol.id = 'runs-list';
        res.body.runs.forEach(function (run) {
          var li = document.createElement('li');
          var t = document.createElement('time');
          t.dateTime = run.utc;
          t.textContent = run.text;
          var utc = document.createElement('span');
          utc.className = 'text-body-secondary text-nowrap';
          utc.textContent = ' (' + run.utc_text + ')';
          li.append(t, utc);
          ol.append(li);
        });
        show([ol]);
      })
      .catch(function () { /* the server-rendered list stays */ });
  }

  function later() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 300);
  }

  form.querySelectorAll('input[name=schedule_preset]').forEach(function (r) { r.addEventListener('change', refresh); });
  cron.addEventListener('input', function () {
    document.getElementById('sp-custom').checked = true;
    later();
  });
  tz.addEventListener('input', later);
  tz.addEventListener('change', refresh);
})();
