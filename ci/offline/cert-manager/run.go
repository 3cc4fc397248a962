package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	controllerpkg "github.com/cert-manager/cert-manager/pkg/controller"
	"github.com/cert-manager/cert-manager/pkg/healthz"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"
)

// livezGrace is how long past its Lease's expiry a leader still reports live
// (a renewal may be in flight); upstream's default.
const livezGrace = 20 * time.Second

// run serves /metrics and /livez, optionally waits for the Lease, then runs
// the selected control loops until ctx ends or one of them fails.
func run(ctx context.Context, o *options) error {
	log := logf.FromContext(ctx)
	selected, skipped, err := selectControllers()
	if err != nil {
		return err
	}
	v := util.VersionInfo()
	log.Info("starting", "version", v.GitVersion, "git_commit", v.GitCommit, "go_version", v.GoVersion,
		"controllers", strings.Join(wantedControllers, ","), "not_started", strings.Join(skipped, ","))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)

	factory, err := controllerpkg.NewContextFactory(ctx, controllerpkg.ContextOptions{
		Kubeconfig:         o.kubeconfig,
		APIServerHost:      o.apiServerHost,
		KubernetesAPIQPS:   o.qps,
		KubernetesAPIBurst: o.burst,
		IssuerOptions: controllerpkg.IssuerOptions{
			ClusterResourceNamespace: o.clusterResourceNamespace,
		},
	})
	if err != nil {
		return fmt.Errorf("building API clients: %w", err)
	}
	base, err := factory.Build()
	if err != nil {
		return fmt.Errorf("building the controller context: %w", err)
	}

	health := healthz.NewServer(livezGrace)
	if err := serveHealthz(ctx, g, health, o.healthzAddress); err != nil {
		return err
	}
	if o.metricsAddress != "" {
		base.Metrics.SetupCertificateCollector(base.SharedInformerFactory.Certmanager().V1().Certificates().Lister())
		if err := serveMetrics(ctx, g, base.Metrics, o.metricsAddress); err != nil {
			return err
		}
	}

	elected := make(chan struct{})
	if o.leaderElect {
		leCtx, err := factory.Build("leader-election")
		if err != nil {
			return fmt.Errorf("building the leader election context: %w", err)
		}
		g.Go(func() error { return holdLease(ctx, o, leCtx, health, elected) })
	} else {
		close(elected)
	}

	select {
	case <-ctx.Done():
		return g.Wait()
	case <-elected:
	}

	// Constructing a loop registers the informers it needs on the shared
	// factories; the factories start only after every loop has done so.
	for _, name := range wantedControllers {
		loop, err := selected[name](factory)
		if err != nil {
			cancel()
			_ = g.Wait()
			return fmt.Errorf("constructing control loop %s: %w", name, err)
		}
		g.Go(func() error {
			logf.FromContext(ctx).Info("starting control loop", "controller", name)
			if err := loop.Run(o.workers, ctx); err != nil {
				return fmt.Errorf("control loop %s: %w", name, err)
			}
			return nil
		})
	}
	base.SharedInformerFactory.Start(ctx.Done())
	base.KubeSharedInformerFactory.Start(ctx.Done())

	err = g.Wait()
	base.KubeSharedInformerFactory.Shutdown()
	base.SharedInformerFactory.Shutdown()
	if err != nil {
		return err
	}
	log.Info("control loops stopped")
	return nil
}
