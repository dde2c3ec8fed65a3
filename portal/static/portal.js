// Progressive enhancement only: every action works without this file.
// Forms marked data-confirm ask before submitting (the server still checks everything).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});
