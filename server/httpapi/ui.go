package httpapi

import (
	"net/http"

	"github.com/rafting/rafting/server/ui"
)

// uiRoutes mounts the dashboard (package server/ui) on /ui: the page and
// its embedded assets without a token (they hold nothing of the cluster),
// charged as the OpenAPI documents are (limitAnonymous: a caller without
// a valid token to its address's unauthenticated bucket — a page load is
// three requests), and its live feed, GET /ui/events, behind any valid
// token — authenticated, rate-limited and counted as every other request,
// and made of the API's own answers asked in-process with that token.
// They are the dashboard's routes, not the REST API's: api/openapi.yaml
// does not list them. Every answer under /ui carries the dashboard's
// headers (its CSP, no framing): the refusals, and other methods and
// paths (405, 404), too.
func (s *Server) uiRoutes() {
	d := ui.New(s, s.log)
	page := ui.Secure(s.wrap("/ui", document, false, false, func(w http.ResponseWriter, r *http.Request, _ identity) {
		d.ServeHTTP(w, r)
	}))
	s.mux.Handle("/ui", page)
	s.mux.Handle("/ui/", page)
	s.mux.Handle("GET /ui/events", ui.Secure(s.wrap("GET /ui/events", anyToken, false, false,
		func(w http.ResponseWriter, r *http.Request, id identity) {
			d.Feed(w, r, ui.Identity{Admin: id.admin, ReadOnly: id.readOnly, Tenant: id.tenant})
		})))
}
