package obs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Limits of the health server. It is read-only and reached by the kubelet
// and Prometheus, so every limit is tight.
const (
	// readHeaderTimeout bounds slowloris clients.
	readHeaderTimeout = 5 * time.Second
	// readTimeout: requests have no body worth waiting for.
	readTimeout = 10 * time.Second
	// writeTimeout covers a full /metrics scrape on a loaded box.
	writeTimeout = 30 * time.Second
	// idleTimeout frees keep-alive connections of departed scrapers.
	idleTimeout = 60 * time.Second
	// maxHeaderBytes: GET requests of probes and scrapers fit in 8 KiB.
	maxHeaderBytes = 8 << 10
	// shutdownTimeout bounds the graceful shutdown: in-flight scrapes get
	// this long, then connections are closed.
	shutdownTimeout = 5 * time.Second
	// metricsTimeout makes promhttp answer 503 rather than hang a scrape.
	metricsTimeout = 10 * time.Second
	// maxMetricsInFlight: concurrent scrapes beyond this get 503, so a
	// scrape storm cannot pin both cores.
	maxMetricsInFlight = 4
)

// Server serves /healthz, /readyz, /denials and /metrics. It exposes no
// environment, no policy content and no secrets.
type Server struct {
	addr string
	srv  *http.Server
	ln   net.Listener
	log  *zap.Logger
}

// NewServer returns a server for addr (e.g. ":15000"). m and d may be nil,
// in which case /metrics or /denials answer 404.
func NewServer(addr string, h *Health, m *Metrics, d *Denials, log *zap.Logger) *Server {
	if log == nil {
		log = zap.NewNop()
	}
	mux := http.NewServeMux()
	// Method-qualified patterns: GET also matches HEAD; any other method
	// gets 405 with an Allow header from the mux.
	mux.Handle("GET /healthz", healthzHandler(h))
	mux.Handle("GET /readyz", readyzHandler(h))
	if d != nil {
		mux.Handle("GET /denials", denialsHandler(d))
	}
	if m != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{
			ErrorLog:            zap.NewStdLog(log),
			ErrorHandling:       promhttp.ContinueOnError,
			Registry:            m.Registry,
			MaxRequestsInFlight: maxMetricsInFlight,
			Timeout:             metricsTimeout,
		}))
	}
	return &Server{
		addr: addr,
		log:  log,
		srv: &http.Server{
			Handler:           hardenHeaders(mux),
			ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout:       readTimeout,
			WriteTimeout:      writeTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          zap.NewStdLog(log),
		},
	}
}

// Listen binds the address. Call it at startup so a port in use is a
// startup error, not a failure discovered later.
func (s *Server) Listen() error {
	if s.ln != nil {
		return fmt.Errorf("obs: health server %s: already listening", s.addr)
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("obs: health server listen %s: %w", s.addr, err)
	}
	s.ln = ln
	return nil
}

// Addr returns the bound address (useful with port 0), or nil before
// Listen.
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Serve serves until ctx is done, then shuts down gracefully within
// shutdownTimeout and returns nil. It returns an error if it was not
// listening or serving failed.
func (s *Server) Serve(ctx context.Context) error {
	if s.ln == nil {
		return fmt.Errorf("obs: health server %s: Serve before Listen", s.addr)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("obs: health server %s: %w", s.addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	if err != nil {
		// Shutdown timed out on a stuck client: close what is left.
		s.log.Warn("health server shutdown timed out; closing connections", zap.Error(err))
		err = s.srv.Close()
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("obs: health server %s: %w", s.addr, serr)
	}
	if err != nil {
		return fmt.Errorf("obs: health server %s: close: %w", s.addr, err)
	}
	return nil
}

// hardenHeaders sets headers that make every answer inert in a browser and
// uncacheable by proxies.
func hardenHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		hdr.Set("X-Content-Type-Options", "nosniff")
		hdr.Set("Cache-Control", "no-store")
		hdr.Set("Content-Security-Policy", "default-src 'none'")
		next.ServeHTTP(w, r)
	})
}

func healthzHandler(h *Health) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !h.Alive() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not alive")
			return
		}
		fmt.Fprintln(w, "ok")
	})
}

func readyzHandler(h *Health) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		r := h.Readiness()
		status := http.StatusOK
		if !r.Ready {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, r)
	})
}

// denialsHandler serves the ring newest first; ?limit=N (1..ring size,
// larger is clamped) returns at most N.
func denialsHandler(d *Denials) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := 0
		if v := r.URL.Query().Get("limit"); v != "" || r.URL.Query().Has("limit") {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				writeJSON(w, http.StatusBadRequest, map[string]string{
					"error": "limit must be a positive integer",
				})
				return
			}
			limit = min(n, d.Size())
		}
		writeJSON(w, http.StatusOK, d.Recent(limit))
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}
