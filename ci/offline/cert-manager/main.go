// cert-manager-controller: cert-manager's certificate and CA/SelfSigned issuer
// control loops (from the cert-manager module's packages) behind a small main
// of our own, for clusters that cannot pull the upstream images. It has no
// webhook and no cainjector, so Certificates must be written fully specified.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	logsapi "k8s.io/component-base/logs/api/v1"

	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"
)

// options are the command-line settings.
type options struct {
	kubeconfig               string
	apiServerHost            string
	clusterResourceNamespace string
	workers                  int
	qps                      float32
	burst                    int
	metricsAddress           string
	healthzAddress           string
	leaderElect              bool
	leaderElectionNamespace  string
	leaseDuration            time.Duration
	renewDeadline            time.Duration
	retryPeriod              time.Duration
	logging                  *logsapi.LoggingConfiguration
}

func parseFlags(args []string) (*options, bool, error) {
	o := &options{logging: logsapi.NewLoggingConfiguration()}
	fs := pflag.NewFlagSet("cert-manager-controller", pflag.ContinueOnError)
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file; empty means the in-cluster service account")
	fs.StringVar(&o.apiServerHost, "master", "", "API server address, overriding the kubeconfig's")
	fs.StringVar(&o.clusterResourceNamespace, "cluster-resource-namespace", "cert-manager",
		"namespace holding the Secrets that ClusterIssuers reference (a CA ClusterIssuer's key pair)")
	fs.IntVar(&o.workers, "concurrent-workers", 5, "workers per control loop")
	fs.Float32Var(&o.qps, "kube-api-qps", 20, "client-side request rate limit to the API server")
	fs.IntVar(&o.burst, "kube-api-burst", 50, "client-side request burst to the API server")
	fs.StringVar(&o.metricsAddress, "metrics-listen-address", "0.0.0.0:9402", "Prometheus /metrics address; empty disables it")
	fs.StringVar(&o.healthzAddress, "healthz-listen-address", "0.0.0.0:9403", "/livez address")
	fs.BoolVar(&o.leaderElect, "leader-elect", false, "hold the Lease cert-manager-controller before running control loops")
	fs.StringVar(&o.leaderElectionNamespace, "leader-election-namespace", "cert-manager", "namespace of the leader election Lease")
	fs.DurationVar(&o.leaseDuration, "leader-election-lease-duration", 15*time.Second, "how long a non-renewed Lease stays held")
	fs.DurationVar(&o.renewDeadline, "leader-election-renew-deadline", 10*time.Second, "how long the leader retries renewing before giving up")
	fs.DurationVar(&o.retryPeriod, "leader-election-retry-period", 2*time.Second, "interval between Lease attempts")
	version := fs.Bool("version", false, "print the version and exit")
	logf.AddFlagsNonDeprecated(o.logging, fs)
	if err := fs.Parse(args); err != nil {
		return nil, false, err
	}
	if fs.NArg() > 0 {
		return nil, false, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if o.workers < 1 {
		return nil, false, fmt.Errorf("--concurrent-workers=%d: want at least 1", o.workers)
	}
	if o.clusterResourceNamespace == "" {
		return nil, false, errors.New("--cluster-resource-namespace must not be empty")
	}
	if o.leaderElect && !(o.retryPeriod < o.renewDeadline && o.renewDeadline < o.leaseDuration) {
		return nil, false, fmt.Errorf("leader election wants retry-period (%s) < renew-deadline (%s) < lease-duration (%s)",
			o.retryPeriod, o.renewDeadline, o.leaseDuration)
	}
	return o, *version, nil
}

func main() {
	o, printVersion, err := parseFlags(os.Args[1:])
	if errors.Is(err, pflag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "cert-manager-controller: %v\n", err)
		os.Exit(2)
	}
	if printVersion {
		v := util.VersionInfo()
		fmt.Printf("cert-manager-controller %s (cert-manager %s, %s, %s)\n", v.GitVersion, v.GitCommit, v.GoVersion, v.Platform)
		return
	}
	logf.InitLogs()
	defer logf.FlushLogs()
	if err := logf.ValidateAndApply(o.logging); err != nil {
		fmt.Fprintf(os.Stderr, "cert-manager-controller: logging flags: %v\n", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx = logf.NewContext(ctx, logf.Log, "controller")
	if err := run(ctx, o); err != nil {
		logf.Log.Error(err, "controller exited")
		logf.FlushLogs()
		os.Exit(1)
	}
}
