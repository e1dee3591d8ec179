// Light or dark: the user's choice (kept in this browser) else the system's preference.
// Loaded in <head> so the page never flashes the wrong theme.
(function () {
  var KEY = 'borgfleet-theme';
  function preferred() {
    var stored = localStorage.getItem(KEY);
    if (stored === 'light' || stored === 'dark') { return stored; }
    return window.matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
  }
  function apply(theme) {
    document.documentElement.setAttribute('data-bs-theme', theme);
    var label = document.querySelector('#theme-toggle .theme-label');
    if (label) { label.textContent = theme === 'dark' ? 'Light theme' : 'Dark theme'; }
  }
  apply(preferred());
  document.addEventListener('DOMContentLoaded', function () {
    apply(preferred());
    var button = document.getElementById('theme-toggle');
    if (button) {
      button.addEventListener('click', function () {
        var next = document.documentElement.getAttribute('data-bs-theme') === 'dark' ? 'light' : 'dark';
        localStorage.setItem(KEY, next);
        apply(next);
      });
    }
  });
})();
