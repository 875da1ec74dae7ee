package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiffhq/skiff/internal/agent"
	"github.com/skiffhq/skiff/internal/image"
	"github.com/skiffhq/skiff/internal/runtime/cri"
	"github.com/skiffhq/skiff/internal/server"
)

func newImageCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Build and import container images"}
	cmd.AddCommand(newImageImportCommand(), newImageBuildCommand())
	return cmd
}

func newImageImportCommand() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "import FILE...",
		Short: "Load image tarballs (docker-archive or OCI layout) into this machine's running node",
		Long: "Load image tarballs into the runtime of the node agent running on this machine.\n" +
			"The images go to the agent's local image mirror and the runtime pulls them through\n" +
			"the CRI, so they are then present for pods with any imagePullPolicy but Always.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			return importImages(cmd.Context(), dataDir, files, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", filepath.Join(server.DefaultDataDir, "agent"), "the node agent's data dir (for `skiff server`: DATA_DIR/agent)")
	return cmd
}

func importImages(ctx context.Context, dataDir string, files []string, out io.Writer) error {
	mirror, err := os.ReadFile(filepath.Join(dataDir, agent.MirrorAddrFile))
	if err != nil {
		return fmt.Errorf("no running agent found in %s: %w", dataDir, err)
	}
	endpoint, err := os.ReadFile(filepath.Join(dataDir, agent.RuntimeEndpointFile))
	if err != nil {
		return fmt.Errorf("no running agent found in %s: %w", dataDir, err)
	}
	mirrorHost := strings.TrimPrefix(strings.TrimSpace(string(mirror)), "http://")
	dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	rt, err := cri.Dial(dialCtx, strings.TrimSpace(string(endpoint)))
	cancel()
	if err != nil {
		return fmt.Errorf("node runtime: %w", err)
	}
	defer rt.Close()
	var errs []error
	for _, f := range files {
		imgs, err := image.ReadArchive(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, img := range imgs {
			ref, err := name.ParseReference(img.Ref)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", img.Ref, err))
				continue
			}
			// The mirror serves a repository whatever registry the name
			// says, so the runtime finds it under its own name.
			target, err := name.ParseReference(mirrorHost+"/"+ref.Context().RepositoryStr()+refSep(ref)+ref.Identifier(), name.Insecure)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if err := remote.Write(target, img.Image, remote.WithContext(ctx)); err != nil {
				errs = append(errs, fmt.Errorf("push %s to the node's mirror: %w", img.Ref, err))
				continue
			}
			resp, err := rt.Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: img.Ref}})
			if err != nil {
				errs = append(errs, fmt.Errorf("runtime pull %s: %w", img.Ref, err))
				continue
			}
			fmt.Fprintf(out, "imported %s (%s)\n", img.Ref, resp.ImageRef)
		}
	}
	return errors.Join(errs...)
}

func refSep(ref name.Reference) string {
	if _, ok := ref.(name.Digest); ok {
		return "@"
	}
	return ":"
}

func newImageBuildCommand() *cobra.Command {
	var output, ref string
	cmd := &cobra.Command{
		Use:   "build busybox|pause -o FILE",
		Short: "Build one of skiff's own small images as a docker-archive tarball",
		Long: "Build one of the images skiff makes itself, with no registry and no Docker:\n" +
			"  busybox  Debian's busybox-static (/bin/busybox) with its applets, named " + image.BusyboxRef + "\n" +
			"  pause    skiff's pod sandbox program, named " + image.PauseRef,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			var named image.Named
			switch args[0] {
			case "busybox":
				img, err := image.Busybox("")
				if err != nil {
					return err
				}
				named = image.Named{Ref: image.BusyboxRef, Image: img}
			case "pause":
				img, err := image.Pause()
				if err != nil {
					return err
				}
				named = image.Named{Ref: image.PauseRef, Image: img}
			default:
				return fmt.Errorf("unknown image %q: want busybox or pause", args[0])
			}
			if ref != "" {
				named.Ref = ref
			}
			f, err := os.Create(output)
			if err != nil {
				return err
			}
			if err := image.WriteArchive(f, []image.Named{named}); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "tarball to write")
	cmd.Flags().StringVar(&ref, "tag", "", "name the image this instead")
	_ = cmd.MarkFlagRequired("output")
	return cmd
}
