// A page showing a job's outcome while the job still runs: polls /api/jobs/<id> and reloads the page
// once the job is final (the server then renders its result). Without JavaScript a meta refresh does.
(function () {
  var el = document.querySelector('[data-wait-job]');
  if (!el) { return; }
  var FINAL = ['succeeded', 'failed', 'abandoned', 'canceled', 'missed'];
  // The status words in the page's language (data-labels from _restore.html); unknown ones as they are.
  var LABELS = JSON.parse(el.dataset.labels || '{}');
  function poll() {
    fetch('/api/jobs/' + el.dataset.waitJob, {credentials: 'same-origin'})
      .then(function (r) { return r.json(); })
      .then(function (j) {
        var status = document.getElementById('wait-status');
        if (status) { status.textContent = LABELS[j.status] || j.status; }
        if (FINAL.indexOf(j.status) >= 0) { window.location.reload(); } else { setTimeout(poll, 1000); }
      })
      .catch(function () { setTimeout(poll, 2000); });
  }
  setTimeout(poll, 500);
})();
