// A minimal stargz-store (the reference ALS) for lazy-als's benchmarks: Debian packages the
// library (golang-github-containerd-stargz-snapshotter-dev) but not the command.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"time"

	"github.com/containerd/containerd/reference"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/containerd/stargz-snapshotter/fs/config"
	"github.com/containerd/stargz-snapshotter/fs/source"
	memorymetadata "github.com/containerd/stargz-snapshotter/metadata/memory"
	"github.com/containerd/stargz-snapshotter/store"
	rhttp "github.com/hashicorp/go-retryablehttp"
)

func main() {
	root := flag.String("root", "/tmp/stargz-store", "state dir")
	insecure := flag.String("insecure", "", "comma-separated registry hosts reached over plain HTTP")
	flag.Parse()
	mp := flag.Arg(0)
	if mp == "" {
		fmt.Fprintln(os.Stderr, "usage: stargz-store [--root DIR] [--insecure HOST,…] MOUNTPOINT")
		os.Exit(2)
	}
	ctx := context.Background()
	lm, err := store.NewLayerManager(ctx, *root, hostsOf(strings.Split(*insecure, ",")), memorymetadata.NewReader, config.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "layer manager:", err)
		os.Exit(1)
	}
	if err := store.Mount(ctx, mp, lm, false); err != nil {
		fmt.Fprintln(os.Stderr, "mount:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil {
		fmt.Fprintln(os.Stderr, "unmount:", err)
	}
}

// hostsOf: each image's own registry, over plain HTTP when listed (the client set-up the
// upstream command uses: retrying HTTP client, 30 s per request, the docker authorizer).
func hostsOf(insecure []string) source.RegistryHosts {
	return func(ref reference.Spec) ([]docker.RegistryHost, error) {
		host := ref.Hostname()
		client := rhttp.NewClient()
		client.Logger = nil
		tr := client.StandardClient()
		tr.Timeout = 30 * time.Second
		h := docker.RegistryHost{
			Client:       tr,
			Host:         host,
			Scheme:       "https",
			Path:         "/v2",
			Capabilities: docker.HostCapabilityPull | docker.HostCapabilityResolve,
			Authorizer:   docker.NewDockerAuthorizer(docker.WithAuthClient(tr)),
		}
		for _, i := range insecure {
			if i == host {
				h.Scheme = "http"
			}
		}
		return []docker.RegistryHost{h}, nil
	}
}
