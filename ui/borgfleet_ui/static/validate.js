// Inline validation of the forms marked data-validate="<form>": when a field is left (and then after
// a short pause in typing), the whole form is judged by POST /api/validate/<form>, the dry run of the
// very operation its submit runs (forms.py), and each field already visited shows that operation's
// message under it (Bootstrap is-invalid / invalid-feedback). While one of them is refused the
// form's buttons wait. Without JavaScript the submit is judged the same way and the page shows the
// messages under the fields.
(function () {
  var PAUSE_MS = 500;
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content;

  function valuesOf(form) {
    var out = {};
    new FormData(form).forEach(function (value, name) {
      if (name === 'csrf_token' || typeof value !== 'string') { return; }
      out[name] = name in out ? [].concat(out[name], value) : value;
    });
    return out;
  }

  // The field an input belongs to: its name, or the group it is part of (data-field, e.g. retention).
  function fieldOf(el) { return el.getAttribute('data-field') || el.name; }

  // Which inputs of a refused group to mark: the one the message names (retention.within), else the
  // filled ones (the templates' rule too, for a refused submit).
  function marked(el, field, message) {
    if (el.name === field) { return true; }
    var named = message.match(new RegExp(field + '\\.([a-z_]+)'));
    return named ? named[1] === el.name : el.value.trim() !== '';
  }

  function setUp(form) {
    var name = form.getAttribute('data-validate');
    var visited = {}, latest = 0, timer = null, extra = {};
    var context = form.getAttribute('data-validate-context');
    if (context) {
      var kv = context.split('=');
      extra[kv[0]] = parseInt(kv[1], 10);
    }
    // Messages the page rendered after a refused submit count as seen: they go once fixed.
    form.querySelectorAll('.invalid-feedback.d-block').forEach(function (fb) {
      visited[fb.getAttribute('data-feedback-for')] = true;
    });

    function show(errors) {
      var refused = false;
      form.querySelectorAll('.invalid-feedback[data-feedback-for]').forEach(function (fb) {
        var field = fb.getAttribute('data-feedback-for');
        var message = visited[field] ? (errors[field] || '') : '';
        fb.textContent = message;
        fb.classList.toggle('d-block', !!message);
        var inputs = Array.prototype.filter.call(
          form.querySelectorAll('[name="' + field + '"], [data-field="' + field + '"]'),
          function (el) { return ['hidden', 'radio', 'checkbox'].indexOf(el.type) < 0; });
        inputs.forEach(function (el) { el.classList.toggle('is-invalid', !!message && marked(el, field, message)); });
        refused = refused || !!message;
      });
      form.querySelectorAll('button:not([type=button])').forEach(function (b) { b.disabled = refused; });
      form.setAttribute('data-checked', refused ? 'refused' : 'ok');
    }

    function check() {
      var mine = ++latest;
      fetch('/api/validate/' + name, {
        method: 'POST', credentials: 'same-origin',
        headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
        body: JSON.stringify(Object.assign({values: valuesOf(form)}, extra))
      }).then(function (r) { return r.ok ? r.json() : null; })
        .then(function (verdict) { if (verdict && mine === latest) { show(verdict.errors || {}); } })
        .catch(function () { /* the submit is judged anyway */ });
    }

    function left(e) {
      var el = e.target;
      if (!el.name || el.tagName === 'BUTTON' || el.type === 'hidden') { return; }
      visited[fieldOf(el)] = true;
      clearTimeout(timer);
      check();
    }
    form.addEventListener('focusout', left);
    form.addEventListener('change', left);
    form.addEventListener('input', function (e) {
      if (!visited[fieldOf(e.target)]) { return; }
      clearTimeout(timer);
      timer = setTimeout(check, PAUSE_MS);
    });
  }

  document.querySelectorAll('form[data-validate]').forEach(setUp);
})();
