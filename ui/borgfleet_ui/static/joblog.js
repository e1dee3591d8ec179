// Live job log: polls /api/jobs/<id>/log?after=N until the job is final.
(function () {
  var script = document.currentScript, id = script.dataset.job, after = 0;
  var log = document.getElementById('log'), status = document.getElementById('status');
  var FINAL = ['succeeded', 'failed', 'abandoned', 'canceled', 'missed'];
  function poll() {
    fetch('/api/jobs/' + id + '/log?after=' + after, {credentials: 'same-origin'})
      .then(function (r) { return r.json(); })
      .then(function (d) {
        if (d.lines.length) { log.textContent += d.lines.join('\n') + '\n'; log.scrollTop = log.scrollHeight; }
        after = d.next;
        status.textContent = d.status;
        if (FINAL.indexOf(d.status) < 0 || d.lines.length) { setTimeout(poll, 1000); }
        else { fetch('/api/jobs/' + id).then(function (r) { return r.json(); }).then(function (j) {
          document.getElementById('error').textContent = j.error || '';
          document.getElementById('result').textContent = j.result ? JSON.stringify(j.result) : '';
          document.body.dataset.final = j.status; }); }
      })
      .catch(function () { setTimeout(poll, 2000); });
  }
  poll();
})();
