package world

import (
	"net/http"
	"strings"
	"sync"
)

// routes are the handlers tests add to the world's HTTP and TLS servers
// under path prefixes of their own; every other request gets the hello.
// The hello handler stays a plain function (no ServeMux) so odd request
// paths the escape tests send are answered, never redirected.
type routes struct {
	mu       sync.Mutex
	byPrefix map[string]http.Handler
}

// HandleHTTPS serves requests to the world's :443 and :80 whose path
// starts with prefix (e.g. "/git/") by h, for every name the world serves.
func (w *World) HandleHTTPS(prefix string, h http.Handler) {
	w.routes.mu.Lock()
	defer w.routes.mu.Unlock()
	if w.routes.byPrefix == nil {
		w.routes.byPrefix = map[string]http.Handler{}
	}
	w.routes.byPrefix[prefix] = h
}

// route returns the handler added for r's path, or nil.
func (w *World) route(r *http.Request) http.Handler {
	w.routes.mu.Lock()
	defer w.routes.mu.Unlock()
	for prefix, h := range w.routes.byPrefix {
		if strings.HasPrefix(r.URL.Path, prefix) {
			return h
		}
	}
	return nil
}
