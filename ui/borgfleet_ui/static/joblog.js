// Live job log: polls /api/jobs/<id>/log?after=N until the job is final.
(function () {
  var script = document.currentScript, id = script.dataset.job, after = 0;
  var log = document.getElementById('log'), status = document.getElementById('status');
  var progress = document.getElementById('progress');
  var FINAL = ['succeeded', 'failed', 'abandoned', 'canceled', 'missed'];
  var COLOURS = {succeeded: 'success', running: 'primary', waiting: 'info', queued: 'secondary',
                 failed: 'danger', abandoned: 'danger', missed: 'warning', canceled: 'secondary'};
  // The status words in the page's language (data-labels from job.html); unknown ones as they are.
  var LABELS = JSON.parse(script.dataset.labels || '{}');
  function show(s) {
    status.textContent = LABELS[s] || s;
    status.dataset.status = s;
    status.className = 'badge status-badge text-bg-' + (COLOURS[s] || 'secondary');
    if (progress) { progress.classList.toggle('d-none', FINAL.indexOf(s) >= 0); }
  }
  function poll() {
    fetch('/api/jobs/' + id + '/log?after=' + after, {credentials: 'same-origin'})
      .then(function (r) { return r.json(); })
      .then(function (d) {
        if (d.lines.length) { log.textContent += d.lines.join('\n') + '\n'; log.scrollTop = log.scrollHeight; }
        after = d.next;
        show(d.status);
        if (FINAL.indexOf(d.status) < 0 || d.lines.length) { setTimeout(poll, 1000); }
        else { fetch('/api/jobs/' + id).then(function (r) { return r.json(); }).then(function (j) {
          document.getElementById('error').textContent = j.error || '';
          document.getElementById('result').textContent = j.result ? JSON.stringify(j.result) : '';
          var cancel = document.getElementById('cancel');
          if (cancel) { cancel.remove(); }
          document.body.dataset.final = j.status; }); }
      })
      .catch(function () { setTimeout(poll, 2000); });
  }
  poll();
})();
