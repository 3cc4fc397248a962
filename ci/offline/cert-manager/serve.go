package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cert-manager/cert-manager/pkg/healthz"
	"github.com/cert-manager/cert-manager/pkg/metrics"
)

// serveHealthz serves /livez: failing once the leader elector stops renewing
// the Lease it holds, or when the clock jumps.
func serveHealthz(ctx context.Context, g *errgroup.Group, h *healthz.Server, addr string) error {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listening for /livez on %s: %w", addr, err)
	}
	g.Go(func() error { return h.Start(ctx, ln) })
	return nil
}

// serveMetrics serves the control loops' Prometheus metrics on /metrics.
func serveMetrics(ctx context.Context, g *errgroup.Group, m *metrics.Metrics, addr string) error {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("listening for /metrics on %s: %w", addr, err)
	}
	srv := m.NewServer(ln)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("metrics server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(shutdownCtx) //nolint:contextcheck // ctx is already done here
	})
	return nil
}
