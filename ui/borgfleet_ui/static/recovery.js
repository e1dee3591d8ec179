// Instant recovery pages: copy buttons for the connection details; a recovery job's page reloads
// once the job ends (its result holds the connection details); a session's page queues a query of
// its host when its health is old (or the operator asked), waits for it, then reloads with what
// the host answered.
(function () {
  document.addEventListener('click', function (e) {
    var button = e.target.closest('button.copy');
    if (!button) { return; }
    var field = document.getElementById(button.dataset.copy);
    field.select();
    // The button's data-copied is the page's word for it, in the page's language.
    var done = function () { button.textContent = button.dataset.copied || 'Copied'; };
    if (navigator.clipboard) { navigator.clipboard.writeText(field.value).then(done, function () {}); }
    else if (document.execCommand('copy')) { done(); }
  });

  var pending = document.querySelector('#recovery-job[data-pending]');
  if (pending) {
    var reloadWhenFinal = function () { if (document.body.dataset.final) { window.location.reload(); return true; } };
    if (!reloadWhenFinal()) {   // the log may have reached its end before this file ran
      new MutationObserver(reloadWhenFinal).observe(document.body, {attributes: true, attributeFilter: ['data-final']});
    }
  }

  // A session's page whose health is old asks its host again (an operator's page; the API checks the role).
  var auto = document.getElementById('health-auto');
  if (auto) {
    fetch(auto.dataset.url, {method: 'POST', credentials: 'same-origin',
                             headers: {'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content}})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (j) { if (j) { window.location.replace(window.location.pathname + '?job=' + encodeURIComponent(j.job_id)); } });
  }

  var refresh = document.getElementById('health-refresh');
  if (refresh) {
    var FINAL = ['succeeded', 'failed', 'abandoned', 'canceled', 'missed'];
    var poll = function () {
      fetch('/api/jobs/' + encodeURIComponent(refresh.dataset.job), {credentials: 'same-origin'})
        .then(function (r) { return r.json(); })
        .then(function (j) {
          if (FINAL.indexOf(j.status) < 0) { setTimeout(poll, 1000); return; }
          if (j.status !== 'succeeded') { refresh.className = 'alert alert-danger'; refresh.textContent = j.error || j.status; return; }
          window.location.replace(window.location.pathname);
        })
        .catch(function () { setTimeout(poll, 2000); });
    };
    poll();
  }
})();
