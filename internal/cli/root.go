package cli

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// Version is kubinception's version, set at link time.
var Version = "dev"

// Execute runs the command line and returns the process exit code.
func Execute(ctx context.Context) int {
	root := &cobra.Command{
		Use:           "kubinception",
		Short:         "Managed Kubernetes: tenant control planes as pods in an admin cluster, state in a shared etcd",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newVersionCommand(), newTunnelCommand(), newLBCommand(), newBuildCommand(), newAdminCommand(), newManagerCommand(), newInstallCommand(),
		newCreateCommand(), newGetCommand(), newKubeconfigCommand(), newRevokeCommand(), newDeleteCommand(), newJoinCommand(), newNodeCommand(), newGatewayCommand(), newFrontDoorCommand(), newHibernateCommand(), newWakeCommand(), newRotateCommand(), newBackupCommand(), newConsoleCommand())
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		return 1
	}
	return 0
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print kubinception's version",
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), Version)
		},
	}
}
