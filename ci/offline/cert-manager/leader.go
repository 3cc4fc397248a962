package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	controllerpkg "github.com/cert-manager/cert-manager/pkg/controller"
	"github.com/cert-manager/cert-manager/pkg/healthz"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
)

// leaseName is the Lease upstream cert-manager's controller uses, so the two
// never run their control loops against one cluster at the same time.
const leaseName = "cert-manager-controller"

// holdLease closes elected once this process holds the Lease and returns an
// error if it loses it while ctx is still live (the process then exits and
// restarts rather than run control loops beside a new leader).
func holdLease(ctx context.Context, o *options, c *controllerpkg.Context, h *healthz.Server, elected chan<- struct{}) error {
	host, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("leader election identity: %w", err)
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, o.leaderElectionNamespace, leaseName,
		c.Client.CoreV1(), c.Client.CoordinationV1(),
		resourcelock.ResourceLockConfig{Identity: host + "-certctl-cert-manager-controller", EventRecorder: c.Recorder})
	if err != nil {
		return fmt.Errorf("leader election lock: %w", err)
	}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   o.leaseDuration,
		RenewDeadline:   o.renewDeadline,
		RetryPeriod:     o.retryPeriod,
		ReleaseOnCancel: true,
		WatchDog:        h.LeaderHealthzAdaptor,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) {
				logf.FromContext(ctx).Info("holding the Lease", "namespace", o.leaderElectionNamespace, "name", leaseName)
				close(elected)
			},
			// Run calls this on every return; the check after Run decides.
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		return fmt.Errorf("leader elector: %w", err)
	}
	le.Run(ctx) // returns once leadership ends or ctx is done
	if ctx.Err() != nil {
		return nil
	}
	return errors.New("lost the leader election Lease")
}
