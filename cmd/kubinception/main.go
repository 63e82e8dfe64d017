// Command kubinception is the kubinception CLI, operator and local admin
// cluster tool.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"kubinception.dev/kubinception/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx)
	stop()
	os.Exit(code)
}
