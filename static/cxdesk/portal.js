// cxdesk portal: small behaviours, no inline script (the Content-Security-Policy forbids it).
(function () {
  "use strict";
  // The language switcher applies on change; its button stays for browsers without script.
  document.documentElement.classList.add("js");
  document.addEventListener("change", (ev) => {
    if (ev.target.matches("select[data-autosubmit]") && ev.target.form) ev.target.form.submit();
  });
  // New request: a visitor who opened a suggested article and leaves without submitting
  // was helped — record a deflection.
  const form = document.getElementById("new-request");
  if (form) {
    let read = null;
    let submitted = false;
    form.addEventListener("submit", () => { submitted = true; });
    document.addEventListener("click", (e) => {
      const a = e.target.closest("a[data-deflect]");
      if (a) read = a.dataset.deflect;
    });
    window.addEventListener("pagehide", () => {
      if (read && !submitted) {
        const data = new FormData();
        data.append("csrfmiddlewaretoken", document.querySelector("[name=csrfmiddlewaretoken]").value);
        data.append("q", document.querySelector("[name=subject]").value);
        navigator.sendBeacon(read, data);
      }
    });
  }
})();
