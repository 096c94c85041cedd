// pause is the node's sandbox ("pause") image: it holds a pod's namespaces open and exits on SIGTERM or
// SIGINT, like Kubernetes' own pause. Built here because no registry is reachable to pull one.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
