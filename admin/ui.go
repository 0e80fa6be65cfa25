package admin

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// The admin web page: static HTML, CSS and JavaScript embedded in the
// binary and served under /ui/ by the admin listener. The files are public
// (they hold no data); the page asks for an admin token, keeps it in the
// browser's sessionStorage and calls the API with it like any client, so
// the page can do exactly what its token may do and nothing more. A token
// may also be passed in the URL fragment (/ui/#token=...), which browsers
// never send to the server; the page removes it from the address bar.

//go:embed web
var webFiles embed.FS

// uiPrefix is where the page is served.
const uiPrefix = "/ui/"

// uiCSP allows the page its own scripts, styles and API calls and nothing
// else: no inline script, no other origin, no framing.
const uiCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// uiRoutes serves the page and redirects / and /ui to it. They need no
// token (see publicRoute).
func uiRoutes() []route {
	sub, err := fs.Sub(webFiles, "web")
	if err != nil {
		panic("admin: embedded web files: " + err.Error()) // a build defect, not a runtime condition
	}
	files := http.StripPrefix(strings.TrimSuffix(uiPrefix, "/"), http.FileServerFS(sub))
	serve := func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", uiCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set(echo.HeaderCacheControl, "no-cache")
		files.ServeHTTP(c.Response(), c.Request())
		return nil
	}
	toUI := func(c echo.Context) error { return c.Redirect(http.StatusFound, uiPrefix) }
	return []route{
		{method: http.MethodGet, path: "/", handler: toUI},
		{method: http.MethodGet, path: "/ui", handler: toUI},
		{method: http.MethodGet, path: uiPrefix + "*", handler: serve},
	}
}

// publicRoute reports whether a matched route is served without a token:
// the health check and the static page.
func publicRoute(c echo.Context) bool {
	if c.Request().Method != http.MethodGet {
		return false
	}
	switch c.Path() {
	case "/healthz", "/", "/ui", uiPrefix + "*":
		return true
	}
	return false
}
