// Command kubectl is the upstream kubectl command tree (k8s.io/kubectl/pkg/cmd) under a
// minimal main, so the pinned kubectl can be built from the Go module proxy alone:
// k8s.io/kubernetes itself cannot be `go install`ed (its staging replaces).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
		os.Exit(1)
	}
}
