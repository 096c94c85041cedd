// Command etcd is the upstream etcd server; this wrapper exists only because
// `go install go.etcd.io/etcd/server/v3@version` refuses modules with replace directives.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
