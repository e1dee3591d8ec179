// Add-a-server wizard and a server's edit page: show only the chosen role's fields (without
// JavaScript both show, each labelled with its role), and copy buttons for the public key and
// known_hosts lines of Test connection's verdict.
(function () {
  var form = document.getElementById('server-wizard') || document.getElementById('server-edit-form');
  if (!form) { return; }
  var sync = function () {
    var checked = form.querySelector('input[name=role]:checked');
    var role = checked ? checked.value : 'client';
    document.querySelectorAll('[data-role-only]').forEach(function (el) {
      el.hidden = el.dataset.roleOnly !== role;
    });
  };
  form.addEventListener('change', function (e) { if (e.target.name === 'role') { sync(); } });
  sync();

  document.addEventListener('click', function (e) {
    var button = e.target.closest('button.copy');
    if (!button) { return; }
    var field = document.getElementById(button.dataset.copy);
    field.select();
    var done = function () { button.textContent = button.dataset.copied || 'Copied'; };
    if (navigator.clipboard) { navigator.clipboard.writeText(field.value).then(done, function () {}); }
    else if (document.execCommand('copy')) { done(); }
  });
}());
