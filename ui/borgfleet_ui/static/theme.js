// Light or dark: the user's own choice (stored with the account: data-user-theme), else this
// browser's (localStorage), else the system's preference. Loaded in <head> so the page never
// flashes the wrong theme. The toggle saves the choice with the account when logged in.
(function () {
  var KEY = 'borgfleet-theme';
  function preferred() {
    var mine = document.documentElement.getAttribute('data-user-theme');
    if (mine === 'light' || mine === 'dark') { return mine; }
    var stored = localStorage.getItem(KEY);
    if (stored === 'light' || stored === 'dark') { return stored; }
    return window.matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
  }
  function apply(theme) {
    document.documentElement.setAttribute('data-bs-theme', theme);
    var button = document.getElementById('theme-toggle');
    var label = button && button.querySelector('.theme-label');
    if (label) {
      label.textContent = theme === 'dark' ? (button.dataset.labelLight || 'Light theme') : (button.dataset.labelDark || 'Dark theme');
    }
  }
  apply(preferred());
  document.addEventListener('DOMContentLoaded', function () {
    apply(preferred());
    var button = document.getElementById('theme-toggle');
    if (button) {
      button.addEventListener('click', function () {
        var next = document.documentElement.getAttribute('data-bs-theme') === 'dark' ? 'light' : 'dark';
        localStorage.setItem(KEY, next);
        document.documentElement.setAttribute('data-user-theme', next);
        apply(next);
        var csrf = document.querySelector('meta[name=csrf-token]');
        if (csrf && document.getElementById('language-switch')) {   // logged in: remember it with the account
          fetch('/api/me/preferences', {method: 'PUT', credentials: 'same-origin',
            headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf.content},
            body: JSON.stringify({theme: next})});
        }
      });
    }
    var select = document.getElementById('language-select');
    if (select) { select.addEventListener('change', function () { select.form.submit(); }); }
  });
})();
