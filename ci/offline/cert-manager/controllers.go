package main

import (
	"fmt"
	"sort"

	controllerpkg "github.com/cert-manager/cert-manager/pkg/controller"

	// Each import registers its control loop with controllerpkg (init) under
	// the name listed in wantedControllers.
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"

	// Issuer implementations the (Cluster)Issuer controllers set Ready for.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

// wantedControllers is everything a fully specified Certificate needs to be
// issued by a SelfSigned or CA (Cluster)Issuer. No ACME, Vault, Venafi,
// ingress/gateway shims or CertificateSigningRequest support.
var wantedControllers = []string{
	// (Cluster)Issuer Ready conditions (the CA issuer checks its key pair).
	"issuers",
	"clusterissuers",
	// Certificate lifecycle: when to issue, the private key, the request,
	// writing the Secret, Ready, and pruning old requests.
	"certificates-trigger",
	"certificates-key-manager",
	"certificates-request-manager",
	"certificates-issuing",
	"certificates-readiness",
	"certificates-revision-manager",
	// CertificateRequests: approval (there is no policy engine) and signing.
	"certificaterequests-approver",
	"certificaterequests-issuer-ca",
	"certificaterequests-issuer-selfsigned",
}

// selectControllers returns the constructors of wantedControllers and the
// names of registered control loops left out. It fails if one is missing, so
// a dependency upgrade that renames a loop is caught at start-up.
func selectControllers() (map[string]controllerpkg.Constructor, []string, error) {
	known := controllerpkg.Known()
	selected := make(map[string]controllerpkg.Constructor, len(wantedControllers))
	for _, name := range wantedControllers {
		fn, ok := known[name]
		if !ok {
			return nil, nil, fmt.Errorf("control loop %q is not registered by the imported cert-manager packages", name)
		}
		selected[name] = fn
	}
	var skipped []string
	for name := range known {
		if _, ok := selected[name]; !ok {
			skipped = append(skipped, name)
		}
	}
	sort.Strings(skipped)
	return selected, skipped, nil
}
