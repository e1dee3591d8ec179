// The retention preview: while its job runs, poll it, then swap in the server-rendered table.
// Without JavaScript the page offers a Refresh link instead.
(function () {
  var FINAL = ['succeeded', 'failed', 'abandoned', 'canceled', 'missed'];
  function poll() {
    var box = document.getElementById('preview');
    if (!box || !box.dataset.job) { return; }
    fetch('/api/jobs/' + box.dataset.job, {credentials: 'same-origin'})
      .then(function (r) { return r.json(); })
      .then(function (j) {
        if (FINAL.indexOf(j.status) < 0) { setTimeout(poll, 1000); return; }
        return fetch(box.dataset.part, {credentials: 'same-origin'})
          .then(function (r) { return r.text(); })
          .then(function (html) { box.outerHTML = html; });
      })
      .catch(function () { setTimeout(poll, 2000); });
  }
  poll();
})();
