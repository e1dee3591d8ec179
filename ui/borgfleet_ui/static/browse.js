// The archive browser: keeps "N selected" true while boxes are ticked (the selection of other levels
// travels in hidden inputs of the same form). Without JavaScript the count is the one of the last load.
(function () {
  var form = document.getElementById('browse'), count = document.getElementById('selected-count');
  if (!form || !count) { return; }
  form.addEventListener('change', function () {
    var n = form.querySelectorAll('input[name=sel][type=hidden], input[name=sel]:checked').length;
    // The page's words (data-one / data-many, "{n}" for the number); French puts 0 in the singular.
    count.textContent = (n < 2 ? count.dataset.one : count.dataset.many).replace('{n}', n);
  });
})();
