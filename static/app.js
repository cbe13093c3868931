// Optional enhancements; every page works without them.
(function () {
  // Live sync status on a tenant page.
  const status = document.getElementById("sync-status");
  if (status && status.dataset.tenant) {
    const message = document.getElementById("sync-message");
    let last = status.textContent.trim();
    const poll = async () => {
      try {
        const response = await fetch(`/api/v1/tenants/${encodeURIComponent(status.dataset.tenant)}/status`, { credentials: "same-origin" });
        if (response.ok) {
          const body = await response.json();
          status.textContent = body.status;
          status.className = `status status-${body.status}`;
          if (message) message.textContent = body.message || "";
          for (const ns of body.namespaces || []) {
            const cell = document.querySelector(`tr[data-namespace="${CSS.escape(ns.name)}"] .status`);
            if (cell) { cell.textContent = ns.status; cell.className = `status status-${ns.status}`; }
          }
          if (last !== body.status && body.status === "Ready" && last !== "") {
            status.setAttribute("aria-live", "polite");
          }
          last = body.status;
        }
      } catch (_) { /* keep the last known status */ }
      setTimeout(poll, last === "Ready" ? 5000 : 1000);
    };
    setTimeout(poll, 500);
  }
  // After a refused submit, take the focus to what needs fixing: the first
  // invalid field, or else the message that says why the form was refused.
  const invalid = document.querySelector("main [aria-invalid=true]");
  const refused = document.querySelector("main .problem[role=alert]");
  if (invalid) {
    invalid.focus();
  } else if (refused) {
    refused.tabIndex = -1;
    refused.focus();
  }
  // A table frame is a tab stop only while it scrolls sideways (the page
  // marks every frame as one, for browsers without this script).
  const frames = document.querySelectorAll(".table-wrap");
  const fit = () => {
    for (const frame of frames) {
      if (frame.scrollWidth > frame.clientWidth) frame.tabIndex = 0;
      else frame.removeAttribute("tabindex");
    }
  };
  fit();
  window.addEventListener("resize", fit);
  // Ask before destructive actions that do not already ask for a typed name.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
})();
