// Forms with data-confirm ask first (no inline handlers: the CSP allows only these files).
document.addEventListener('submit', function (e) {
  var msg = e.target.dataset && e.target.dataset.confirm;
  if (msg && !window.confirm(msg)) { e.preventDefault(); }
});
