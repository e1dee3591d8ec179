// Forms with data-confirm ask first, in a modal (no inline handlers: the CSP allows only these files).
// Without JavaScript the form simply submits.
document.addEventListener('submit', function (e) {
  var form = e.target, msg = form.dataset && form.dataset.confirm;
  if (!msg || form.dataset.confirmed === '1') { return; }
  e.preventDefault();
  var el = document.getElementById('confirm-modal');
  if (!el || !window.bootstrap) { if (window.confirm(msg)) { form.dataset.confirmed = '1'; form.submit(); } return; }
  document.getElementById('confirm-text').textContent = msg;
  var yes = document.getElementById('confirm-yes');
  yes.textContent = form.dataset.confirmLabel || 'Confirm';
  var modal = bootstrap.Modal.getOrCreateInstance(el);
  yes.onclick = function () { form.dataset.confirmed = '1'; modal.hide(); form.submit(); };
  modal.show();
});
