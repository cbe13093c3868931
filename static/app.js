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
  // Ask before destructive actions that do not already ask for a typed name.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
})();
