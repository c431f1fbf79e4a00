// Collects the page's uncaught errors (loaded first, as a classic script),
// so the browser tests can assert there were none.
window.pageErrors = [];
window.addEventListener("error", (event) => window.pageErrors.push(String(event.message)));
window.addEventListener("unhandledrejection", (event) => window.pageErrors.push(String(event.reason)));
