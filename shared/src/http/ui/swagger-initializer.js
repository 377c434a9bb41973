// Swagger UI's start-up: the document beside this page, no validator badge (it would call a
// public service), the token kept in the page only, and no top bar for loading other URLs.
window.onload = function () {
  window.ui = SwaggerUIBundle({
    "url": "openapi.json",
    "dom_id": "#swagger-ui",
    "deepLinking": true,
    "validatorUrl": "none",
    "persistAuthorization": false,
    "displayRequestDuration": true,
    "presets": [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    "plugins": [SwaggerUIBundle.plugins.DownloadUrl],
  });
};
