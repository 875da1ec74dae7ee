package cli

import (
	"flag"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"

	"github.com/skiffhq/skiff/internal/server"
)

// newKubectlCommand is upstream kubectl. It keeps kubectl's own config
// order (--kubeconfig, $KUBECONFIG, ~/.kube/config) and falls back to the
// local server's admin kubeconfig when none of those exists.
func newKubectlCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "kubectl",
		Short:              "Run kubectl against the cluster",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			useLocalAdminKubeconfig(args)
			k := kubectlcmd.NewKubectlCommand(kubectlcmd.KubectlOptions{
				Arguments: append([]string{"kubectl"}, args...),
				IOStreams: genericiooptions.IOStreams{In: cmd.InOrStdin(), Out: cmd.OutOrStdout(), ErrOut: cmd.ErrOrStderr()},
			})
			addKlogFlags(k)
			k.SetArgs(args)
			return k.ExecuteContext(cmd.Context())
		},
	}
}

// useLocalAdminKubeconfig points $KUBECONFIG at the local server's admin
// kubeconfig if the user gave no configuration kubectl would find.
func useLocalAdminKubeconfig(args []string) {
	for _, a := range args {
		if a == "--kubeconfig" || len(a) > 13 && a[:13] == "--kubeconfig=" {
			return
		}
	}
	if os.Getenv(clientcmd.RecommendedConfigPathEnvVar) != "" {
		return
	}
	if _, err := os.Stat(clientcmd.RecommendedHomeFile); err == nil {
		return
	}
	dataDir := os.Getenv("SKIFF_DATA_DIR")
	if dataDir == "" {
		dataDir = server.DefaultDataDir
	}
	_ = os.Setenv(clientcmd.RecommendedConfigPathEnvVar, filepath.Join(dataDir, "admin.kubeconfig"))
}

// addKlogFlags gives kubectl its -v and --vmodule logging flags, which
// upstream's main registers outside the kubectl command itself.
func addKlogFlags(cmd *cobra.Command) {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	for _, name := range []string{"v", "vmodule"} {
		if f := fs.Lookup(name); f != nil {
			cmd.PersistentFlags().AddGoFlag(f)
		}
	}
}
